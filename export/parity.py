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
from stylecast.train.model import TransformerNet

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
    style: str | None = None  # the style painted, for a multi-style model (each is measured one-hot)


def parity_files(folder: Path, limit: int = 8) -> list[Path]:
    files = sorted(p for p in Path(folder).glob("*") if p.suffix.lower() in IMAGE_SUFFIXES)[:limit]
    if not files:
        raise StylecastError(f"{folder}: no photos for the parity check; pass --parity-images DIR")
    return files


def parity_images(folder: Path, limit: int = 8) -> list[np.ndarray]:
    return [load_image(p).rgb for p in parity_files(folder, limit)]


class Reference:
    """PyTorch fp32 (eval) outputs on a set of photos, computed once per size and shared by every graph
    checked against them (each precision of an export, each int8 candidate). A multi-style model's outputs are
    computed in each of its styles, one-hot; ``styles`` names its rows (default: their indices)."""

    def __init__(self, model: TransformerNet, photos: list[np.ndarray], styles: list[str] | None = None) -> None:
        self.model, self.photos = model.eval(), photos
        count = model.config.styles
        names = styles or [str(row) for row in range(count)]
        # style name -> its one-hot weights; a single-style model's one entry takes no style input
        self.styles: dict[str | None, np.ndarray | None] = (
            {None: None} if count == 1 else dict(zip(names, np.eye(count, dtype=np.float32), strict=True)))
        self._outputs: dict[tuple[int, int, str | None], tuple[np.ndarray, np.ndarray]] = {}

    def rows(self, style: str | None, count: int) -> np.ndarray | None:
        """The style input of ``count`` images painted in ``style`` (None for a single-style model)."""
        weights = self.styles[style]
        return None if weights is None else np.repeat(weights[None], count, axis=0)

    def at(self, height: int, width: int, style: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(NCHW input batch, expected output) at this size, in ``style`` (a key of ``styles``)."""
        if (height, width, style) not in self._outputs:
            batch = np.stack([fit(p, height, width) for p in self.photos]).transpose(0, 3, 1, 2).astype(np.float32)
            rows = self.rows(style, len(batch))
            with torch.no_grad():
                expected = self.model(torch.from_numpy(batch), None if rows is None else torch.from_numpy(rows))
            self._outputs[height, width, style] = batch, expected.numpy()
        return self._outputs[height, width, style]


def measure(reference: Reference, backend: Backend,
            sizes: tuple[tuple[int, int], ...] = DEFAULT_SIZES) -> list[SizeParity]:
    """The reference vs the backend, image by image, at each size (and in each style of a multi-style model)."""
    results = []
    for style in reference.styles:
        extra = {} if style is None else {"style": reference.rows(style, 1)}  # plug-in backends may take no style
        for height, width in sizes:
            batch, expected = reference.at(height, width, style)
            got = np.concatenate([backend.run(batch[i:i + 1], **extra) for i in range(len(batch))])
            if got.shape != expected.shape:
                raise StylecastError(f"{backend.path}: output shape {got.shape} != PyTorch's {expected.shape}")
            compared = Comparison().extend(expected, got)
            results.append(SizeParity(height, width, len(batch), psnr_min=compared.psnr_min,
                                      psnr_mean=float(np.mean(compared.psnr)), ssim_min=compared.ssim_min,
                                      max_abs_error=max(compared.max_abs), style=style))
    return results


def as_dicts(results: list[SizeParity]) -> list[dict]:
    """JSON-safe rows (see ``json_safe``); a single-style model's rows name no style."""
    return [{k: json_safe(v) for k, v in asdict(r).items() if not (k == "style" and v is None)} for r in results]


def json_safe(value: object) -> object:
    """A float rounded for a report, an exact match (infinite PSNR) written as 999 dB; anything else as it is."""
    return round(min(value, EXACT_DB), 4) if isinstance(value, float) else value
