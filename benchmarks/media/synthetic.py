"""Media made on the fly for tests and benchmarks: videos with audio, and panning camera shots."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np

from stylecast.runtime.images import resize_to

_FORMATS = {".mp4": "mp4", ".mkv": "matroska", ".mov": "mov", ".webm": "webm", ".avi": "avi"}


def moving_frames(count: int, height: int = 48, width: int = 64, seed: int = 0) -> Iterator[np.ndarray]:
    """A square sliding over a gradient: simple, deterministic motion."""
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 // max(1, width - 1), y * 255 // max(1, height - 1), np.full_like(x, 96)], -1)
    rng = np.random.default_rng(seed)
    for i in range(count):
        frame = base.copy()
        left = (i * 3) % max(1, width - 12)
        frame[10:22, left:left + 12] = (240, 40, 40)
        noise = rng.integers(-3, 4, frame.shape)
        yield np.clip(frame + noise, 0, 255).astype(np.uint8)


def panning_frames(photo: np.ndarray, count: int, height: int, width: int, noise: float = 2.0,
                   seed: int = 0) -> Iterator[np.ndarray]:
    """A slow camera pan across ``photo`` with sensor noise: what makes style transfer flicker."""
    rng = np.random.default_rng(seed)
    travel = photo.shape[1] - width
    if travel < 0 or photo.shape[0] < height:
        raise ValueError("photo smaller than the requested frame")
    for i in range(count):
        left = round(travel * i / max(1, count - 1))
        frame = photo[:height, left:left + width].astype(np.float32)
        yield np.clip(frame + rng.normal(0, noise, frame.shape), 0, 255).astype(np.uint8)


def still_frames(photo: np.ndarray, count: int, height: int, width: int, seed: int = 0) -> Iterator[np.ndarray]:
    """A tripod shot: ``photo`` scaled to twice ``width`` wide, its left part, where only sensor noise moves
    (the still-camera clip of `make bench-video` and of the quality report's flicker ratio)."""
    scaled = resize_to(photo, width * 2, round(width * 2 * photo.shape[0] / photo.shape[1]))
    return panning_frames(scaled[:, :width], count, height, width, seed=seed)


def write_video(path: Path, frames: Iterable[np.ndarray], fps: int = 12, audio: str | None = "aac",
                audio_rate: int = 16000, codec: str = "libx264", rotation: int = 0) -> int:
    """Encode RGB frames (and a sine tone for as long as they last) with PyAV; returns the frame count.

    ``rotation`` sets the display matrix (degrees counter-clockwise), as phones do for portrait video.
    """
    import av

    path = Path(path)
    count = 0
    with av.open(str(path), "w", format=_FORMATS[path.suffix.lower()]) as out:
        video = None
        sound = out.add_stream(audio, rate=audio_rate, layout="mono") if audio else None
        for rgb in frames:
            if video is None:
                video = out.add_stream(codec, rate=fps)
                video.height, video.width = rgb.shape[:2]
                video.pix_fmt = "yuv420p" if rgb.shape[0] % 2 == 0 and rgb.shape[1] % 2 == 0 else "yuv444p"
                if rotation:
                    video.set_display_rotation(rotation)
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts, frame.time_base = count, Fraction(1, fps)
            out.mux(video.encode(frame))
            count += 1
        out.mux(video.encode(None))
        if sound is not None:
            _write_tone(out, sound, count / fps, audio_rate)
    return count


def _write_tone(out, stream, seconds: float, rate: int) -> None:  # noqa: ANN001 - PyAV objects
    import av

    samples = np.sin(2 * np.pi * 440 * np.arange(round(seconds * rate)) / rate).astype(np.float32) * 0.3
    chunk = 1024
    for start in range(0, len(samples), chunk):
        piece = samples[start:start + chunk][None, :]
        if stream.codec_context.format.name == "s16":
            piece = (piece * 32767).astype(np.int16)
            frame = av.AudioFrame.from_ndarray(piece, format="s16", layout="mono")
        else:
            frame = av.AudioFrame.from_ndarray(piece, format="flt", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = rate, start, Fraction(1, rate)
        out.mux(stream.encode(frame))
    out.mux(stream.encode(None))
