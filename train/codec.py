"""A video codec's frame-to-frame changes on a still scene, as a training perturbation (``--stability-noise codec``).

A still camera's H.264 video removes most sensor noise, and what is left between two frames is a few blocks
re-coded: the input change that the quality report's flicker ratio measures the net multiplying. This encodes
each training crop as the flicker clip encodes its photo (sensor noise on every frame, libx264 at its defaults)
and takes the change between the two P frames, so the stability term trains against that change itself."""

from __future__ import annotations

import io
from fractions import Fraction

import numpy as np

from stylecast.runtime.errors import import_optional

FRAMES = 3  # an I frame, then the two P frames whose difference is kept
GRAIN = 2.0  # sensor noise on each frame, grey levels (std), as `benchmarks.media.synthetic.still_frames` adds
CLIPS = 4  # x264 often re-codes nothing between two frames of a small crop: up to this many clips are tried
# x264's output on frames of 32 px or less a side depends on what the process did before (measured on a 32x32
# frame: 0.3% of encodes differ in a quiet process, 7% after heap churn); from 48 px none did in thousands of
# encodes. Smaller crops are edge-padded to this before encoding.
MIN_SIDE = 64


def codec_change(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The change between two decoded P frames of a still clip of ``rgb`` (HxWx3 uint8), as float32 HxWx3: the
    first of up to ``CLIPS`` clips (each with fresh grain) whose P frames differ, else zeros (a flat image)."""
    av = import_optional("av", "--stability-noise codec encodes video with PyAV: pip install 'stylecast[video]'")
    for _ in range(CLIPS):
        change = _one_clip(av, rgb, rng)
        if change.any():
            break
    return change


def _one_clip(av, rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:  # noqa: ANN001 - the PyAV module
    """One encoder thread and frames of at least ``MIN_SIDE``: x264's output (and so a resumed run's perturbation)
    is then the same on every run and machine."""
    height, width = rgb.shape[:2]
    even = np.pad(rgb, ((0, _encodable(height) - height), (0, _encodable(width) - width), (0, 0)), mode="edge")
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=12)
        stream.height, stream.width, stream.pix_fmt = even.shape[0], even.shape[1], "yuv420p"
        stream.thread_count = 1
        for index in range(FRAMES):
            grainy = np.clip(np.rint(even + rng.normal(0.0, GRAIN, even.shape)), 0, 255).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(grainy, format="rgb24")
            frame.pts, frame.time_base = index, Fraction(1, 12)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    buffer.seek(0)
    with av.open(buffer, "r") as clip:
        decoded = [frame.to_ndarray(format="rgb24").astype(np.float32) for frame in clip.decode(video=0)]
    return (decoded[-1] - decoded[-2])[:height, :width]


def _encodable(side: int) -> int:
    """The side a frame is edge-padded to: even (4:2:0) and at least ``MIN_SIDE``."""
    return max(MIN_SIDE, side + side % 2)
