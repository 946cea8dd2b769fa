"""The still-camera flicker ratio in a model's quality report (the target: at most 2.0), measured as
`make bench-video` measures its still clip: a tripod shot of a photo where only sensor noise moves, encoded to
H.264 and decoded, stylized frame by frame. The ratio is the output's mean frame-to-frame change over the
input's (``runtime.temporal.FlickerMeter``); 1.0 means the net adds no flicker."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from stylecast.benchmarks.media.synthetic import still_frames, write_video
from stylecast.runtime.video import stylize_video
from stylecast.train.data import NOISE_KINDS, step_noise
from stylecast.train.settings import TrainSettings

WIDTH, HEIGHT, FPS, SECONDS = 256, 144, 12, 20  # bench-video's still clip
TARGET = 2.0
# The runtime's mitigations as the docs' video table shows them: what a user gets from `stylize --temporal-blend
# 0.5` and from `stylize --input-hold 3`.
RUNTIME_BLEND, RUNTIME_HOLD = 0.5, 3.0
GAIN_SIGMA = TrainSettings.stability_sigma  # the noise the stability term trains on, unless a preset changes it


def noise_gains(stylize: Callable[[np.ndarray], np.ndarray], frame: np.ndarray) -> dict[str, float | None]:
    """How much the net multiplies each kind of input change that the stability term can train against (`train
    --stability-noise`): the mean output change over the mean input change, on one frame. The kind whose gain
    tracks the flicker ratio from model to model is the closer stand-in for the codec's frame-to-frame changes."""
    height, width = frame.shape[:2]
    clean = stylize(frame).astype(np.float64)
    gains = {}
    image = torch.tensor(frame).permute(2, 0, 1)[None].float()
    for kind in NOISE_KINDS:
        noise = step_noise(image, GAIN_SIGMA, 0, 0, kind)[0].permute(1, 2, 0).numpy()
        noisy = np.clip(np.rint(frame + noise), 0, 255).astype(np.uint8)
        change = float(np.abs(noisy.astype(np.float64) - frame).mean())  # 0 where x264 re-codes nothing (flat)
        gains[kind] = round(float(np.abs(stylize(noisy).astype(np.float64) - clean).mean()) / change, 4) if change else None
    return gains


def still_flicker(stylize: Callable[[np.ndarray], np.ndarray], photo: np.ndarray, seconds: float = SECONDS) -> dict:
    """Flicker figures of ``stylize`` (HxWx3 uint8 -> same) on a still clip of ``photo``: the net's own (what the
    target holds it to), and under the runtime's ``--temporal-blend`` (``blended``) and ``--input-hold``
    (``held``), from the same clip."""
    frames = round(seconds * FPS)
    with tempfile.TemporaryDirectory(prefix="stylecast-flicker-") as scratch:
        clip = Path(scratch) / "still.mp4"
        write_video(clip, still_frames(photo, frames, HEIGHT, WIDTH), fps=FPS, audio=None)
        own, blended, held = (stylize_video(clip, Path(scratch) / f"still.{blend}.{hold}.mp4",
                                            lambda batch: [stylize(f) for f in batch], temporal_blend=blend,
                                            input_hold=hold).flicker
                              for blend, hold in ((0.0, 0.0), (RUNTIME_BLEND, 0.0), (0.0, RUNTIME_HOLD)))
    first = next(iter(still_frames(photo, 1, HEIGHT, WIDTH)))
    return {**own, "frames": frames, "size": f"{WIDTH}x{HEIGHT}", "target": TARGET,
            "blended": {"temporal_blend": RUNTIME_BLEND, "ratio": blended["ratio"]},
            "held": {"input_hold": RUNTIME_HOLD, "ratio": held["ratio"]},
            "noise_gains": noise_gains(stylize, first)}
