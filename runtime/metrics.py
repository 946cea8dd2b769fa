"""Image-quality figures used by parity checks and benchmarks (numpy only)."""

from __future__ import annotations

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


def border_ratio(rgb: np.ndarray, band: int = 8) -> float:
    """Mean gradient magnitude in the outer ``band`` pixels divided by that of the interior: about 0.9 for photos,
    well above 1 for a net that paints motifs along the image edges (issue 14's border artefact)."""
    x = rgb.astype(np.float64).mean(axis=2)
    h, w = x.shape
    if min(h, w) <= 2 * band + 1:
        raise StylecastError(f"border measure: a {w}x{h} image has no interior inside a {band} px band")
    dy, dx = np.diff(x, axis=0)[:, :-1], np.diff(x, axis=1)[:-1, :]
    magnitude = np.hypot(dx, dy)  # on the (h-1) x (w-1) grid of forward differences
    inner = np.zeros(magnitude.shape, dtype=bool)
    inner[band:h - 1 - band, band:w - 1 - band] = True
    return float(magnitude[~inner].mean() / max(magnitude[inner].mean(), 1e-12))
