"""Parity of every format with PyTorch eager fp32, on the same real photos in the same run."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from stylecast.runtime.formats import PRECISIONS
from stylecast.runtime.metrics import max_abs_error, psnr, ssim

EXACT_DB = 999.0  # JSON has no infinity: an exact match is written as 999 dB, as in export reports


def within_floor(row: dict) -> bool:
    """A bench row's worst PSNR and SSIM meet its precision's floors (rows without parity do not)."""
    floors = PRECISIONS.get(row["precision"])
    if row.get("psnr_min") is None or floors is None:
        return False
    return row["psnr_min"] >= floors.psnr_floor_db and (row.get("ssim_min") or 0.0) >= floors.ssim_floor


@dataclass
class Scores:
    psnr: list[float] = field(default_factory=list)
    ssim: list[float] = field(default_factory=list)
    max_abs: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, float | int | None]:
        if not self.psnr:
            return {"psnr_min": None, "psnr_mean": None, "ssim_min": None, "max_abs_error": None, "parity_images": 0}
        return {"psnr_min": round(min(min(self.psnr), EXACT_DB), 3),
                "psnr_mean": round(min(float(np.mean(self.psnr)), EXACT_DB), 3),
                "ssim_min": round(min(self.ssim), 6), "max_abs_error": round(max(self.max_abs), 4),
                "parity_images": len(self.psnr)}


class ParityCollector:
    """Scores each format's output for a photo as soon as the reference output for it exists.

    Outputs that arrive before the reference (the round order rotates) wait, then are freed:
    at 1080p each is 25 MB, so nothing is kept longer than one round.
    """

    def __init__(self, reference_key: str) -> None:
        self.reference_key = reference_key
        self.references: dict[int, np.ndarray] = {}
        self.waiting: dict[int, list[tuple[str, np.ndarray]]] = {}
        self.scores: dict[str, Scores] = {}

    def add(self, photo: int, key: str, output: np.ndarray) -> None:
        if key == self.reference_key:
            self.references[photo] = output[0].transpose(1, 2, 0)
            for waiting_key, waiting_out in self.waiting.pop(photo, []):
                self._score(photo, waiting_key, waiting_out)
            self._score(photo, key, output)
        elif photo in self.references:
            self._score(photo, key, output)
        else:
            self.waiting.setdefault(photo, []).append((key, output))

    def _score(self, photo: int, key: str, output: np.ndarray) -> None:
        expected, got = self.references[photo], output[0].transpose(1, 2, 0)
        scores = self.scores.setdefault(key, Scores())
        value = psnr(expected, got)
        scores.psnr.append(EXACT_DB if math.isinf(value) else value)
        scores.ssim.append(ssim(expected, got))
        scores.max_abs.append(max_abs_error(expected, got))

    def summary(self, key: str) -> dict[str, float | int | None]:
        return self.scores.get(key, Scores()).summary()
