"""Parity of every format with PyTorch eager fp32, on the same real photos in the same run."""

from __future__ import annotations

import numpy as np

from stylecast.runtime.formats import PRECISIONS
from stylecast.runtime.metrics import EXACT_DB, Comparison

__all__ = ["EXACT_DB", "ParityCollector", "within_floor"]


def within_floor(row: dict) -> bool:
    """A bench row's worst PSNR and SSIM meet its precision's floors (rows without parity do not)."""
    floors = PRECISIONS.get(row["precision"])
    if row.get("psnr_min") is None or floors is None:
        return False
    return row["psnr_min"] >= floors.psnr_floor_db and (row.get("ssim_min") or 0.0) >= floors.ssim_floor


class ParityCollector:
    """Scores each format's output for a photo as soon as the reference output for it exists.

    Outputs that arrive before the reference (the round order rotates) wait, then are freed:
    at 1080p each is 25 MB, so nothing is kept longer than one round.
    """

    def __init__(self, reference_key: str) -> None:
        self.reference_key = reference_key
        self.references: dict[int, np.ndarray] = {}
        self.waiting: dict[int, list[tuple[str, np.ndarray]]] = {}
        self.scores: dict[str, Comparison] = {}

    def add(self, photo: int, key: str, output: np.ndarray) -> None:
        if key == self.reference_key:
            self.references[photo] = output
            for waiting_key, waiting_out in self.waiting.pop(photo, []):
                self._score(photo, waiting_key, waiting_out)
            self._score(photo, key, output)
        elif photo in self.references:
            self._score(photo, key, output)
        else:
            self.waiting.setdefault(photo, []).append((key, output))

    def _score(self, photo: int, key: str, output: np.ndarray) -> None:
        self.scores.setdefault(key, Comparison()).add(self.references[photo], output)

    def summary(self, key: str) -> dict[str, float | int | None]:
        """The bench row's parity fields: psnr_min, psnr_mean, ssim_min, max_abs_error, parity_images."""
        figures = self.scores.get(key, Comparison()).summary()
        figures["parity_images"] = figures.pop("images")
        return figures
