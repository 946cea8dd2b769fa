"""Colour preservation for style transfer (Gatys et al. 2016, "Preserving Color in Neural Artistic Style Transfer").

Two ways to keep a photo's colours while taking a painting's texture:

- luminance-only transfer: stylize the luminance channel alone, then put the photo's chroma back
  (:func:`grey_luminance`, :func:`match_luminance`, :func:`with_chroma_of`);
- colour histogram matching: recolour the painting so its RGB mean and covariance equal the
  photo's before stylizing (:func:`match_colour`), the paper's linear transfer.

numpy and Pillow only, so the runtime can use it too.
"""

from __future__ import annotations

import numpy as np
from PIL import Image


def _ycbcr(rgb: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(rgb, "RGB").convert("YCbCr"))


def luminance(rgb: np.ndarray) -> np.ndarray:
    """HxW uint8 luma (ITU-R BT.601, as Pillow computes it)."""
    return _ycbcr(rgb)[..., 0]


def grey_luminance(rgb: np.ndarray) -> np.ndarray:
    """The luma as a 3-channel grey image: what a luminance-only transfer feeds the loss network."""
    return np.repeat(luminance(rgb)[..., None], 3, axis=2)


def match_luminance(style_grey: np.ndarray, content_grey: np.ndarray) -> np.ndarray:
    """Shift and scale the style's luma to the content's mean and spread, so only texture transfers."""
    s, c = style_grey.astype(np.float64), content_grey.astype(np.float64)
    matched = (s - s.mean()) * (c.std() / max(s.std(), 1e-6)) + c.mean()
    return np.clip(np.rint(matched), 0, 255).astype(np.uint8)


def with_chroma_of(stylized: np.ndarray, content: np.ndarray) -> np.ndarray:
    """The stylized image's luma with the content's chroma (both HxWx3 uint8 of one size)."""
    ycbcr = _ycbcr(content).copy()
    ycbcr[..., 0] = luminance(stylized)
    return np.asarray(Image.fromarray(ycbcr, "YCbCr").convert("RGB"))


def _sqrtm(cov: np.ndarray, inverse: bool = False) -> np.ndarray:
    values, vectors = np.linalg.eigh(cov)
    values = np.clip(values, 1e-8, None) ** (-0.5 if inverse else 0.5)
    return (vectors * values) @ vectors.T


def match_colour(style: np.ndarray, content: np.ndarray) -> np.ndarray:
    """Recolour ``style`` with the affine map that gives it ``content``'s RGB mean and covariance."""
    s = style.reshape(-1, 3).astype(np.float64)
    c = content.reshape(-1, 3).astype(np.float64)
    mu_s, mu_c = s.mean(0), c.mean(0)
    transform = _sqrtm(np.cov(c, rowvar=False)) @ _sqrtm(np.cov(s, rowvar=False), inverse=True)
    out = (s - mu_s) @ transform.T + mu_c
    return np.clip(np.rint(out), 0, 255).astype(np.uint8).reshape(style.shape)
