"""Image-quality figures, and the one comparator that export parity, the bench and gpu-check judge outputs with
(numpy only)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from stylecast.runtime.errors import StylecastError


def psnr(reference: np.ndarray, test: np.ndarray, peak: float = 255.0) -> float:
    """Peak signal-to-noise ratio in dB; ``inf`` for identical images."""
    mse = np.mean((reference.astype(np.float64) - test.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10.0 * np.log10(peak * peak / mse))


def _gaussian_blur(x: np.ndarray, sigma: float = 1.5, radius: int = 5) -> np.ndarray:
    """Separable Gaussian over H and W of an HxWxC array ('valid' region only)."""
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps /= taps.sum()
    rows = sum(taps[i] * x[i:x.shape[0] - 2 * radius + i] for i in range(len(taps)))
    return sum(taps[i] * rows[:, i:x.shape[1] - 2 * radius + i] for i in range(len(taps)))


def ssim(reference: np.ndarray, test: np.ndarray, peak: float = 255.0) -> float:
    """Mean SSIM (Wang et al. 2004: 11x11 Gaussian, sigma 1.5) over HxWxC images."""
    a, b = reference.astype(np.float64), test.astype(np.float64)
    if a.ndim == 2:
        a, b = a[..., None], b[..., None]
    if min(a.shape[:2]) < 11:
        raise ValueError("SSIM needs images of at least 11x11 pixels")
    c1, c2 = (0.01 * peak) ** 2, (0.03 * peak) ** 2
    mu_a, mu_b = _gaussian_blur(a), _gaussian_blur(b)
    var_a = _gaussian_blur(a * a) - mu_a**2
    var_b = _gaussian_blur(b * b) - mu_b**2
    cov = _gaussian_blur(a * b) - mu_a * mu_b
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return float(ssim_map.mean())


def max_abs_error(reference: np.ndarray, test: np.ndarray) -> float:
    return float(np.max(np.abs(reference.astype(np.float64) - test.astype(np.float64))))


EXACT_DB = 999.0  # JSON has no infinity: an exact match is written as 999 dB


def _hwc(image: np.ndarray) -> np.ndarray:
    """One image as HxWxC: NCHW batches of one and CHW arrays are turned, HxWxC passes."""
    if image.ndim == 4:
        if image.shape[0] != 1:
            raise ValueError(f"compare one image at a time, not a batch of {image.shape[0]}")
        image = image[0]
    return image.transpose(1, 2, 0) if image.ndim == 3 and image.shape[0] in (1, 3) and image.shape[2] > 4 else image


@dataclass
class Comparison:
    """Outputs compared with their reference image by image: worst and mean PSNR, worst SSIM, largest error."""

    psnr: list[float] = field(default_factory=list)
    ssim: list[float] = field(default_factory=list)
    max_abs: list[float] = field(default_factory=list)

    def add(self, reference: np.ndarray, output: np.ndarray) -> None:
        """Score one output against its reference (NCHW batch of one, CHW or HxWxC, float or uint8)."""
        expected, got = _hwc(reference), _hwc(output)
        if expected.shape != got.shape:
            raise ValueError(f"output shape {got.shape} != the reference's {expected.shape}")
        value = psnr(expected, got)
        self.psnr.append(EXACT_DB if math.isinf(value) else value)
        self.ssim.append(ssim(expected, got))
        self.max_abs.append(max_abs_error(expected, got))

    def extend(self, references: np.ndarray, outputs: np.ndarray) -> Comparison:
        """Score a batch image by image."""
        for expected, got in zip(references, outputs, strict=True):
            self.add(expected, got)
        return self

    @property
    def psnr_min(self) -> float:
        return min(self.psnr)

    @property
    def ssim_min(self) -> float:
        return min(self.ssim)

    def within(self, psnr_floor_db: float, ssim_floor: float = 0.0) -> bool:
        """Every image meets both floors (a comparison of nothing meets none)."""
        return bool(self.psnr) and self.psnr_min >= psnr_floor_db and self.ssim_min >= ssim_floor

    def summary(self) -> dict[str, float | int | None]:
        """JSON-ready figures; None where nothing was compared."""
        if not self.psnr:
            return {"psnr_min": None, "psnr_mean": None, "ssim_min": None, "max_abs_error": None, "images": 0}
        return {"psnr_min": round(self.psnr_min, 3), "psnr_mean": round(float(np.mean(self.psnr)), 3),
                "ssim_min": round(self.ssim_min, 6), "max_abs_error": round(max(self.max_abs), 4),
                "images": len(self.psnr)}


def border_ratio(rgb: np.ndarray, band: int = 8) -> float:
    """Mean gradient magnitude in the outer ``band`` pixels divided by that of the interior: about 0.9 for photos,
    well above 1 for a net that paints motifs along the image edges."""
    x = rgb.astype(np.float64).mean(axis=2)
    h, w = x.shape
    if min(h, w) <= 2 * band + 1:
        raise StylecastError(f"border measure: a {w}x{h} image has no interior inside a {band} px band")
    dy, dx = np.diff(x, axis=0)[:, :-1], np.diff(x, axis=1)[:-1, :]
    magnitude = np.hypot(dx, dy)  # on the (h-1) x (w-1) grid of forward differences
    inner = np.zeros(magnitude.shape, dtype=bool)
    inner[band:h - 1 - band, band:w - 1 - band] = True
    return float(magnitude[~inner].mean() / max(magnitude[inner].mean(), 1e-12))
