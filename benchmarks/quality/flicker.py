"""The still-camera flicker ratio in a model's quality report (issue 14: at most 2.0), measured as
`make bench-video` measures its still clip: a tripod shot of a photo where only sensor noise moves, encoded to
H.264 and decoded, stylized frame by frame. The ratio is the output's mean frame-to-frame change over the
input's (``runtime.temporal.FlickerMeter``); 1.0 means the net adds no flicker."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from stylecast.benchmarks.media.synthetic import still_frames, write_video
from stylecast.runtime.video import stylize_video

WIDTH, HEIGHT, FPS, SECONDS = 256, 144, 12, 20  # bench-video's still clip
TARGET = 2.0


def still_flicker(stylize: Callable[[np.ndarray], np.ndarray], photo: np.ndarray, seconds: float = SECONDS) -> dict:
    """Flicker figures of ``stylize`` (HxWx3 uint8 -> same) on a still clip of ``photo``."""
    frames = round(seconds * FPS)
    with tempfile.TemporaryDirectory(prefix="stylecast-flicker-") as scratch:
        clip = Path(scratch) / "still.mp4"
        write_video(clip, still_frames(photo, frames, HEIGHT, WIDTH), fps=FPS, audio=None)
        report = stylize_video(clip, Path(scratch) / "still.stylized.mp4", lambda batch: [stylize(f) for f in batch])
    return {**report.flicker, "frames": frames, "size": f"{WIDTH}x{HEIGHT}", "target": TARGET}
