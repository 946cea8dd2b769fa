"""Stroke size: the net paints a photo downscaled by ``stroke``, so its strokes come out ``1 / stroke`` times larger,
and the painting returns to the photo's size guided by the photo itself, so the photo's edges stay sharp.

A net trained on 128-384 px crops paints strokes a few pixels wide: on a 12 MP photo or a 1080p frame they are too
small to read, and the output looks like a colour filter. Painting at a lower resolution also costs ``stroke²`` of
the net's work, so the knob is a speed knob too.

Upsampling, by detail transfer through two guided filters (He et al. 2013; OpenCV contrib's
``cv2.ximgproc.guidedFilter``): the painting is upscaled bicubically (``up``, blurred over about ``1 / stroke`` px),
then ``up + GF(photo, up) - GF(photo', up)``, where ``photo'`` is the photo taken through the same down- and
upscaling. Each guided filter fits ``up`` locally as a linear function of its guide; the difference of the two fits
is the detail the resampling took from the photo, weighed by how strongly the painting follows the photo there.
Where the photo has no edge the two fits agree and the painting's own strokes pass untouched; at an edge the
photo's sharp step replaces the blurred one. A single guided filter of ``up`` (the textbook joint upsampling)
sharpened edges but smoothed the strokes away with them (a half to two thirds of plain bicubic upscaling's gradient
energy along the photo's edges, measured on the wave model), as any smoothing filter guided by the photo does. The
guide is the photo's luminance: a colour guide took 2.5-5x the time (two filters at 1080p: 0.7-1.3 s against
0.26 s on a 2-core CPU) for no sharper edges. Resampling is OpenCV's too (area averaging down, bicubic up), since
v2 tensors are float, not 8-bit images.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

import numpy as np

from stylecast.runtime.errors import StylecastError, import_optional

MISSING = "needs OpenCV's contrib modules (guided filters): pip install 'stylecast[stroke]'"
# The guided filters' window radius, in pixels of the painting as the net painted it (the blur of the bicubic
# upscaling spans about two), and their regulariser on the 0-255 scale: a (0.03 x 255)² local variance is where
# the photo's detail counts as an edge rather than noise ((0.01 x 255)² to (0.1 x 255)² kept edges about as sharp,
# measured).
RADIUS = 2.0
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
    return [_upsample(cv2, painted, image, photo, stroke)
            for painted, image, photo in zip(run(small), images, small, strict=True)]


def _opencv(where: str) -> ModuleType:
    """OpenCV with its contrib modules, or one line saying how to install them."""
    cv2 = import_optional("cv2", f"{where} below 1 {MISSING}")
    if not hasattr(cv2, "ximgproc"):
        raise StylecastError(f"{where} below 1 {MISSING} (in place of the OpenCV package without them)")
    return cv2


def _scaled(image: np.ndarray, stroke: float) -> tuple[int, int]:
    """(width, height) of ``image`` scaled by ``stroke``, at least a pixel each."""
    height, width = image.shape[:2]
    return max(1, round(width * stroke)), max(1, round(height * stroke))


def _grey(cv2: ModuleType, rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb.astype(np.float32, copy=False), cv2.COLOR_RGB2GRAY)


def _upsample(cv2: ModuleType, painted: np.ndarray, image: np.ndarray, photo: np.ndarray,
              stroke: float) -> np.ndarray:
    """``painted`` (the net's output for ``photo``, ``image`` downscaled) at ``image``'s size, with the detail the
    downscaling took from ``image`` put back where the painting follows it."""
    height, width = image.shape[:2]
    up = cv2.resize(np.ascontiguousarray(painted, np.float32), (width, height), interpolation=cv2.INTER_CUBIC)
    blurred = cv2.resize(_grey(cv2, photo), (width, height), interpolation=cv2.INTER_CUBIC)
    radius = max(1, round(RADIUS / stroke))
    guided = cv2.ximgproc.guidedFilter
    out = up + guided(_grey(cv2, image), up, radius, EPS) - guided(blurred, up, radius, EPS)
    if image.dtype == np.uint8:
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return out
