"""Fréchet Inception Distance, from Inception-v3 weights the user supplies.

The weights cannot be downloaded on these machines and no installed library ships them, so FID runs
only with ``--fid-weights``: the TorchScript Inception-v3 of StyleGAN's and clean-fid's metrics
(``inception-2015-12-05.pt``), which takes RGB in [0, 255] resized to 299 x 299 and returns the 2048
pool features when called with ``return_features=True``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from stylecast.runtime.artifacts import sha256_file
from stylecast.runtime.errors import StylecastError

FEATURES = 2048
INPUT_SIZE = 299


class InceptionFeatures:
    """RGB uint8 images -> (N, 2048) float64 pool features."""

    def __init__(self, path: Path) -> None:
        if not path.is_file():
            raise StylecastError(f"--fid-weights {path}: no such file; pass the TorchScript Inception-v3 "
                                 "(inception-2015-12-05.pt from StyleGAN's or clean-fid's metrics)")
        try:
            self.net = torch.jit.load(str(path), map_location="cpu").eval()
        except (RuntimeError, ValueError) as exc:
            raise StylecastError(f"--fid-weights {path}: not a TorchScript model ({str(exc).splitlines()[0]}); pass "
                                 "inception-2015-12-05.pt") from exc
        self.path, self.sha256 = path, sha256_file(path)

    def __call__(self, images: list[np.ndarray]) -> np.ndarray:
        rows = []
        for rgb in images:
            resized = np.asarray(Image.fromarray(rgb).resize((INPUT_SIZE, INPUT_SIZE), Image.Resampling.BICUBIC))
            batch = torch.from_numpy(resized.copy()).permute(2, 0, 1)[None].float()
            try:
                with torch.no_grad():
                    features = self.net(batch, return_features=True)
            except RuntimeError as exc:
                raise StylecastError(f"--fid-weights {self.path}: does not run as an Inception feature extractor "
                                     f"({str(exc).splitlines()[0]})") from exc
            if tuple(features.shape) != (1, FEATURES):
                raise StylecastError(f"--fid-weights {self.path}: returned features of shape {tuple(features.shape)}, "
                                     f"not (1, {FEATURES}); pass the Inception-v3 feature extractor")
            rows.append(features.double().numpy())
        return np.concatenate(rows)


def _sqrt_psd(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh(matrix)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """|mu_a - mu_b|^2 + Tr(C_a + C_b - 2 (C_a C_b)^1/2) between two sets of feature rows.

    Tr((C_a C_b)^1/2) = Tr((C_a^1/2 C_b C_a^1/2)^1/2), whose inner matrix is symmetric: eigenvalues
    only, no complex round-off from a general matrix square root, even for rank-deficient covariances.
    """
    if len(a) < 2 or len(b) < 2:
        raise StylecastError("FID needs at least 2 images on each side")
    mean_a, mean_b = a.mean(axis=0), b.mean(axis=0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root_a = _sqrt_psd(cov_a)
    inner = np.linalg.eigvalsh(root_a @ cov_b @ root_a)
    trace_sqrt = float(np.sqrt(np.clip(inner, 0.0, None)).sum())
    return float(((mean_a - mean_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2.0 * trace_sqrt)
