"""`Stylizer`: the Python API of the runtime. numpy in, numpy out, any backend behind it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .backends.base import Backend, load_backend
from .images import resize_max_side


class Stylizer:
    """Stylize RGB uint8 images with one exported model.

    >>> stylizer = Stylizer("artifacts/wave/wave.fp32.onnx")   # doctest: +SKIP
    >>> out = stylizer(rgb)                                     # HxWx3 uint8 -> HxWx3 uint8
    """

    def __init__(self, model: Path | str, backend: str = "auto", providers: list[str] | None = None,
                 threads: int | None = None) -> None:
        self.backend: Backend = load_backend(Path(model), backend, providers, threads)

    @property
    def style(self) -> str:
        return self.backend.metadata.get("style", "unknown")

    @property
    def precision(self) -> str:
        return self.backend.metadata.get("precision", "unknown")

    def __call__(self, rgb: np.ndarray, max_side: int | None = None) -> np.ndarray:
        return self.stylize_batch([resize_max_side(rgb, max_side)])[0]

    def stylize_batch(self, images: list[np.ndarray]) -> list[np.ndarray]:
        """Images of one size run as one batch; mixed sizes run one by one."""
        if len({im.shape for im in images}) == 1:
            height, width = images[0].shape[:2]
            if min(height, width) < MIN_SIDE:
                return [out[:height, :width] for out in self.stylize_batch([pad_to_min(im) for im in images])]
            batch = np.stack(images).transpose(0, 3, 1, 2).astype(np.float32)
            return list(to_uint8(self.backend.run(batch)))
        return [self.stylize_batch([im])[0] for im in images]


# The first conv's reflection padding needs a side longer than kernel // 2 (5 px for Johnson's 9x9, measured);
# 16 covers first kernels up to 31.
MIN_SIDE = 16


def pad_to_min(rgb: np.ndarray) -> np.ndarray:
    """Repeat the edge pixels of a tiny image (e.g. 1x1) up to MIN_SIDE; the caller crops back."""
    height, width = rgb.shape[:2]
    return np.pad(rgb, ((0, max(0, MIN_SIDE - height)), (0, max(0, MIN_SIDE - width)), (0, 0)), mode="edge")


def to_uint8(batch: np.ndarray) -> np.ndarray:
    """NCHW float [0, 255] -> NHWC uint8, rounding rather than truncating."""
    return np.clip(np.rint(batch), 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)
