"""Does an exported graph compute what the PyTorch model computes? Measured on real photos."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from stylecast.runtime.backends.base import Backend
from stylecast.runtime.errors import StylecastError
from stylecast.runtime.images import IMAGE_SUFFIXES, fit, load_image
from stylecast.runtime.metrics import EXACT_DB, Comparison

# One square size and one that is not a multiple of 4 (odd, even portrait) on purpose:
# the strided convs and the crop back to the input size must survive both.
DEFAULT_SIZES = ((256, 256), (243, 317))


@dataclass
class SizeParity:
    height: int
    width: int
    images: int
    psnr_min: float
    psnr_mean: float
    ssim_min: float
    max_abs_error: float


def parity_files(folder: Path, limit: int = 8) -> list[Path]:
    files = sorted(p for p in Path(folder).glob("*") if p.suffix.lower() in IMAGE_SUFFIXES)[:limit]
    if not files:
        raise StylecastError(f"{folder}: no photos for the parity check; pass --parity-images DIR")
    return files


def parity_images(folder: Path, limit: int = 8) -> list[np.ndarray]:
    return [load_image(p).rgb for p in parity_files(folder, limit)]


class Reference:
    """PyTorch fp32 (eval) outputs on a set of photos, computed once per size and shared by every graph
    checked against them (each precision of an export, each int8 candidate)."""

    def __init__(self, model: torch.nn.Module, photos: list[np.ndarray]) -> None:
        self.model, self.photos = model.eval(), photos
        self._outputs: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}

    def at(self, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        """(NCHW input batch, expected output) at this size."""
        if (height, width) not in self._outputs:
            batch = np.stack([fit(p, height, width) for p in self.photos]).transpose(0, 3, 1, 2).astype(np.float32)
            with torch.no_grad():
                self._outputs[height, width] = batch, self.model(torch.from_numpy(batch)).numpy()
        return self._outputs[height, width]


def measure(reference: Reference, backend: Backend,
            sizes: tuple[tuple[int, int], ...] = DEFAULT_SIZES) -> list[SizeParity]:
    """The reference vs the backend, image by image, at each size."""
    results = []
    for height, width in sizes:
        batch, expected = reference.at(height, width)
        got = np.concatenate([backend.run(batch[i:i + 1]) for i in range(len(batch))])
        if got.shape != expected.shape:
            raise StylecastError(f"{backend.path}: output shape {got.shape} != PyTorch's {expected.shape}")
        compared = Comparison().extend(expected, got)
        results.append(SizeParity(height, width, len(batch), psnr_min=compared.psnr_min,
                                  psnr_mean=float(np.mean(compared.psnr)), ssim_min=compared.ssim_min,
                                  max_abs_error=max(compared.max_abs)))
    return results


def as_dicts(results: list[SizeParity]) -> list[dict]:
    """JSON-safe rows; an exact match (infinite PSNR) is written as 999 dB."""
    return [{k: (round(min(v, EXACT_DB), 4) if isinstance(v, float) else v) for k, v in asdict(r).items()}
            for r in results]
