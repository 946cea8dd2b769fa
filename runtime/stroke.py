"""Stroke size: the net paints a photo downscaled by ``stroke``, so its strokes come out ``1 / stroke`` times larger,
and the painting returns to the photo's size guided by the photo itself, so the photo's edges stay sharp.

A net trained on 128-384 px crops paints strokes a few pixels wide: on a 12 MP photo or a 1080p frame they are too
small to read, and the output looks like a colour filter. Painting at a lower resolution also costs ``stroke²`` of
the net's work, so the knob is a speed knob too.

Upsampling, by detail transfer fitted at the painting's size (the fast guided filter's scheme: He and Sun 2015, after
He et al. 2013's guided filter): around every pixel of the painting, a least-squares fit of the painting against the
photo as the net saw it gives its local gain, how strongly the painting follows the photo there. The painting is
upscaled bicubically and the photo's detail that the downscaling took (the photo minus its own down- and upscaled
copy) is added back, weighed by that gain. Where the photo has no edge there is no detail to add and the painting's
own strokes pass untouched; at an edge the photo's sharp step replaces the blurred one, as strongly as the painting
follows it. The fit is at the painting's size, where painting and photo are equally sharp: the earlier scheme (two
guided filters at full size, the photo against the upscaled painting) fitted a sharp guide to a blurred painting,
which understates the gain, and cost 0.35x of a stroke-1 run at 1080p against 0.31x for this one (`make
bench-stroke`). A single guided filter of the upscaled painting (the textbook joint upsampling) sharpened edges but
smoothed the strokes away with them. The guide is the photo's luminance: a colour guide took 2.5-5x the time for no
sharper edges (measured with the earlier scheme). Resampling and box filters are OpenCV's, since v2 tensors are
float, not 8-bit images.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

import numpy as np

from stylecast.runtime.errors import StylecastError, import_optional

MISSING = "needs OpenCV: pip install 'stylecast[stroke]'"
# The fit's window radius, in pixels of the painting as the net painted it, and its regulariser on the 0-255 scale: a
# (0.03 x 255)² local variance is where the photo's detail counts as an edge rather than noise ((0.01 x 255)² to
# (0.1 x 255)² kept edges about as sharp with the earlier scheme, measured). Radius 1 and 2 gave the same edges.
RADIUS = 2
EPS = (0.03 * 255) ** 2


def check_stroke(stroke: float, where: str = "--stroke") -> None:
    """``stroke`` in (0, 1], and the guided filter installed where it is below 1 (``where`` names the setting)."""
    if not 0.0 < stroke <= 1.0:  # NaN fails too
        raise StylecastError(f"{where} {stroke}: must be above 0 and at most 1 (1 paints as trained, 0.5 paints "
                             "strokes twice as large)")
    if stroke < 1.0:
        _opencv(where)


def paint_at_stroke(run: Callable[[list[np.ndarray]], list[np.ndarray]], images: list[np.ndarray],
                    stroke: float) -> list[np.ndarray]:
    """``run`` (HxWx3 arrays in, the same sizes out: the net, whole, tiled or batched) on ``images`` downscaled by
    ``stroke``, each result brought back to its image's size guided by it (see the module doc). ``stroke`` 1 is
    ``run(images)`` itself. uint8 images give uint8 results; float32 ones (0-255, the v2 tensors) float32."""
    check_stroke(stroke)
    if stroke == 1.0:
        return run(images)
    cv2 = _opencv("--stroke")
    images = [np.ascontiguousarray(image) for image in images]  # OpenCV takes no strided views
    small = [cv2.resize(image, _scaled(image, stroke), interpolation=cv2.INTER_AREA) for image in images]
    return [_upsample(cv2, painted, image, photo)
            for painted, image, photo in zip(run(small), images, small, strict=True)]


def _opencv(where: str) -> ModuleType:
    """OpenCV, or one line saying how to install it."""
    return import_optional("cv2", f"{where} below 1 {MISSING}")


def _scaled(image: np.ndarray, stroke: float) -> tuple[int, int]:
    """(width, height) of ``image`` scaled by ``stroke``, at least a pixel each."""
    height, width = image.shape[:2]
    return max(1, round(width * stroke)), max(1, round(height * stroke))


def _grey(cv2: ModuleType, rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb.astype(np.float32, copy=False), cv2.COLOR_RGB2GRAY)


def _box(cv2: ModuleType, values: np.ndarray) -> np.ndarray:
    """The mean over each pixel's (2 RADIUS + 1)² window."""
    side = 2 * RADIUS + 1
    return cv2.boxFilter(values, -1, (side, side), borderType=cv2.BORDER_REFLECT)


def _gain(cv2: ModuleType, guide: np.ndarray, painted: np.ndarray) -> np.ndarray:
    """Per pixel and channel, the slope of the least-squares fit of ``painted`` against ``guide`` in its window."""
    mean_guide, mean_painted = _box(cv2, guide), _box(cv2, painted)
    covariance = _box(cv2, guide[..., None] * painted) - mean_guide[..., None] * mean_painted
    variance = _box(cv2, guide * guide) - mean_guide * mean_guide
    return covariance / (variance[..., None] + EPS)


def _upsample(cv2: ModuleType, painted: np.ndarray, image: np.ndarray, photo: np.ndarray) -> np.ndarray:
    """``painted`` (the net's output for ``photo``, ``image`` downscaled) at ``image``'s size, with the detail the
    downscaling took from ``image`` put back as strongly as the painting follows the photo there."""
    height, width = image.shape[:2]
    painted = np.ascontiguousarray(painted, np.float32)
    guide = _grey(cv2, photo)
    gain = _gain(cv2, guide, painted).reshape(painted.shape)
    detail = _grey(cv2, image) - cv2.resize(guide, (width, height), interpolation=cv2.INTER_CUBIC)
    up = cv2.resize(painted, (width, height), interpolation=cv2.INTER_CUBIC)
    out = up + cv2.resize(gain, (width, height), interpolation=cv2.INTER_LINEAR).reshape(up.shape) * detail[..., None]
    if image.dtype == np.uint8:
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return out
