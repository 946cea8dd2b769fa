"""Video in, stylized video out: decode, stylize and encode overlap in three stages.

A decoder thread and an encoder thread (PyAV, i.e. FFmpeg) talk to the inference loop through
bounded queues, so the backend is fed while the next frames decode and the last ones encode,
and memory stays bounded whatever the video's length. Audio packets travel through the same
queues in stream order and are remuxed untouched where the output container takes their codec,
else re-encoded (and the report says which). Frame timestamps, rate and size are kept; rotated
videos (phone footage) are turned upright before stylizing, so the output needs no rotation flag.
"""

from __future__ import annotations

import errno
import json
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from stylecast.runtime.artifacts import FORMAT_KEY, sidecar_path, tool_versions
from stylecast.runtime.errors import StylecastError, import_optional
from stylecast.runtime.images import atomic_write, refuse_special, write_error
from stylecast.runtime.temporal import FlickerMeter, InputHold, TemporalBlend

VIDEO_SUFFIXES = {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi"}
# FFmpeg muxer and video encoder per output suffix; x264 where the wheel has it, else a fallback.
_CONTAINER = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm", ".avi": "avi"}
_VIDEO_CODECS = {"webm": ("libvpx-vp9", "libvpx"), "avi": ("mpeg4",)}
_DEFAULT_VIDEO_CODECS = ("libx264", "libopenh264", "mpeg4")
# Audio codecs each container stores as they are (copied without re-encoding), and the re-encode target.
_AUDIO_COPY = {"mp4": {"aac", "mp3", "alac", "ac3", "eac3", "opus", "flac"},
               "mov": {"aac", "mp3", "alac", "ac3", "eac3", "pcm_s16le", "pcm_s24le"},
               "webm": {"opus", "vorbis"}, "avi": {"mp3", "ac3", "pcm_s16le"}}
_AUDIO_ENCODE = {"webm": "libopus", "avi": "libmp3lame"}
_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EISDIR, errno.EFBIG}
_QUEUE = 8  # frames in flight per queue: enough to hide I/O jitter, small enough for 4K frames


@dataclass
class VideoReport:
    """What `stylecast stylize` says about a video at the end, and writes beside it as JSON."""

    source: str
    output: str
    frames: int = 0
    width: int = 0
    height: int = 0
    fps: float = 0.0
    duration_s: float = 0.0
    video_codec: str = ""
    audio: str = "none"
    rotation_applied: int = 0
    batch: int = 1
    temporal_blend: float = 0.0
    input_hold: float = 0.0
    flicker: dict = field(default_factory=dict)
    processing_fps: float = 0.0
    backend_busy: float = 0.0  # share of the run the backend spent inferring: near 1.0 means I/O never held it up
    model: dict = field(default_factory=dict)
    versions: dict = field(default_factory=dict)


def _import_av():  # noqa: ANN202 - returns the module
    return import_optional("av", "video needs PyAV: pip install 'stylecast[video]'")


def _open_input(av, path: Path):  # noqa: ANN001, ANN202 - PyAV objects
    refuse_special(path)
    if not path.is_file():
        raise StylecastError(f"{path}: no such file" if not path.exists() else f"{path}: is a folder, not a video")
    try:
        container = av.open(str(path), "r")
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise StylecastError(f"{path}: not a video FFmpeg can read ({exc}); re-export or re-download it") from exc
    if not container.streams.video:
        container.close()
        raise StylecastError(f"{path}: has no video stream")
    return container


def _video_encoder(av, fmt: str) -> str:  # noqa: ANN001
    for name in _VIDEO_CODECS.get(fmt, _DEFAULT_VIDEO_CODECS):
        try:
            av.codec.Codec(name, "w")
            return name
        except (av.FFmpegError, ValueError):
            continue
    raise StylecastError(f"this PyAV build has no video encoder for .{fmt} output; try --out with .mkv or .mp4")


def _upright(rgb: np.ndarray, rotation: int) -> np.ndarray:
    """Apply a display rotation (degrees counter-clockwise, as FFmpeg reports it) to the pixels."""
    turns = round(rotation / 90) % 4
    return np.ascontiguousarray(np.rot90(rgb, turns)) if turns else rgb


class _Pipeline:
    """Threads and queues of one video job; any stage's failure stops all stages."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.errors: list[BaseException] = []

    def put(self, q: queue.Queue, item: object) -> bool:
        """Block until there is room, unless the job was stopped meanwhile."""
        while not self.stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def get(self, q: queue.Queue) -> object:
        while True:
            try:
                return q.get(timeout=0.1)
            except queue.Empty:
                if self.stop.is_set():
                    return None

    @staticmethod
    def join(workers: list[threading.Thread]) -> None:
        """Wait in short steps, so Ctrl-C still reaches the main thread."""
        for worker in workers:
            while worker.is_alive():
                worker.join(0.1)

    def thread(self, target: Callable[[], None], name: str) -> threading.Thread:
        def guarded() -> None:
            try:
                target()
            except BaseException as exc:  # handed to the main thread, which re-raises it
                self.errors.append(exc)
                self.stop.set()

        worker = threading.Thread(target=guarded, name=name, daemon=True)
        worker.start()
        return worker


_END = object()


def stylize_video(source: Path, dest: Path, stylize_batch: Callable[[list[np.ndarray]], list[np.ndarray]],
                  batch: int = 1, temporal_blend: float = 0.0, input_hold: float = 0.0,
                  model_meta: dict | None = None,
                  progress: Callable[[int, int | None], None] | None = None) -> VideoReport:
    """Stylize every frame of ``source`` into ``dest`` (written atomically) plus ``dest``.json."""
    av = _import_av()
    fmt = _CONTAINER.get(dest.suffix.lower())
    if fmt is None:
        raise StylecastError(f"{dest}: unsupported video output type; use one of {sorted(_CONTAINER)}")
    src = _open_input(av, source)
    report = VideoReport(source=str(source), output=str(dest), batch=max(1, batch), temporal_blend=temporal_blend,
                         input_hold=input_hold, model=dict(model_meta or {}),
                         versions=json.loads(tool_versions("av", "onnxruntime")))
    try:
        atomic_write(dest, lambda tmp: _run(av, src, tmp, fmt, stylize_batch, report, progress))
    except (OSError, ValueError, av.FFmpegError) as exc:  # PyAV reports bad media as FFmpegError or ValueError
        if isinstance(exc, OSError) and (exc.errno in _WRITE_ERRNOS or not isinstance(exc, av.FFmpegError)):
            raise write_error(dest, exc) from exc
        raise StylecastError(f"{source}: FFmpeg failed while stylizing ({exc}); the file may be damaged") from exc
    finally:
        src.close()
    sidecar = sidecar_path(dest)
    content = {FORMAT_KEY: "video-report", **asdict(report)}
    atomic_write(sidecar, lambda tmp: tmp.write_text(json.dumps(content, indent=2) + "\n"))
    return report


def _run(av, src, tmp: Path, fmt: str, stylize_batch, report: VideoReport, progress) -> None:  # noqa: ANN001
    """The three stages; returns when the last packet is muxed, or re-raises a stage's failure."""
    vin = src.streams.video[0]
    ain = src.streams.audio[0] if src.streams.audio else None
    vin.thread_type = "AUTO"  # FFmpeg's own decode threads
    rate = vin.average_rate or vin.guessed_rate or Fraction(25)
    total = vin.frames or None
    report.fps = round(float(rate), 3)
    report.video_codec = _video_encoder(av, fmt)
    out = av.open(str(tmp), "w", format=fmt)
    out.metadata["comment"] = "stylecast " + json.dumps(report.model, sort_keys=True)
    pipe = _Pipeline()
    decoded: queue.Queue = queue.Queue(_QUEUE)
    styled: queue.Queue = queue.Queue(_QUEUE)
    workers = [pipe.thread(lambda: _decode(src, vin, ain, pipe, decoded), "decode"),
               pipe.thread(lambda: _encode(out, ain, fmt, rate, report, pipe, styled), "encode")]
    try:
        _infer(pipe, decoded, styled, stylize_batch, report, progress, total)
        pipe.put(styled, _END)
        pipe.join(workers)
        if pipe.errors:
            raise pipe.errors[0]
    except BaseException:  # Ctrl-C included: stop the stages before their containers close under them
        pipe.stop.set()
        pipe.join(workers)
        raise
    finally:
        out.close()
    report.duration_s = round(float(vin.duration * vin.time_base), 3) if vin.duration else round(
        report.frames / float(rate), 3)
    if report.frames == 0:
        raise StylecastError(f"{report.source}: no video frames could be decoded")


def _audio_stream(out, ain, fmt: str, report: VideoReport):  # noqa: ANN001, ANN202
    if ain is None:
        return None
    name = ain.codec_context.name
    if fmt == "matroska" or name in _AUDIO_COPY.get(fmt, set()):
        report.audio = f"{name} copied"
        return ("copy", out.add_stream_from_template(ain))
    target = _AUDIO_ENCODE.get(fmt, "aac")
    stream = out.add_stream(target, rate=ain.codec_context.sample_rate or 48000)
    report.audio = f"{name} re-encoded to {target} (.{fmt} cannot hold {name})"
    return ("encode", stream)


def _decode(src, vin, ain, pipe: _Pipeline, decoded: queue.Queue) -> None:  # noqa: ANN001
    """Stage 1: demux in file order; video frames as RGB arrays, audio packets as they are."""
    wanted = [vin] + ([ain] if ain is not None else [])
    for packet in src.demux(*wanted):
        if pipe.stop.is_set():
            return
        if packet.stream.type == "audio":
            if packet.dts is not None and not pipe.put(decoded, ("audio", packet)):
                return
            continue
        for frame in packet.decode():
            rotation = int(getattr(frame, "rotation", 0) or 0)
            rgb = _upright(frame.to_ndarray(format="rgb24"), rotation)
            if not pipe.put(decoded, ("video", (rgb, frame.pts, frame.time_base, rotation))):
                return
    pipe.put(decoded, _END)


def _infer(pipe: _Pipeline, decoded: queue.Queue, styled: queue.Queue, stylize_batch, report: VideoReport,  # noqa: ANN001
           progress, total: int | None) -> None:  # noqa: ANN001
    """Stage 2 (the calling thread): batch frames, stylize, smooth, measure flicker. The net sees each frame
    through the input hold; the blend's motion gate and the flicker figure see the frame as decoded."""
    meter, blend, hold = FlickerMeter(), TemporalBlend(report.temporal_blend), InputHold(report.input_hold)
    frames: list[tuple] = []
    tic = time.perf_counter()
    busy = 0.0

    def flush() -> bool:
        nonlocal busy
        start = time.perf_counter()
        outputs = stylize_batch([held for held, _ in frames])
        busy += time.perf_counter() - start
        for (_, (rgb, pts, time_base, rotation)), result in zip(frames, outputs, strict=True):
            result = blend(rgb, result)
            meter.add(rgb, result)
            report.frames += 1
            report.rotation_applied = rotation
            if not pipe.put(styled, ("video", (result, pts, time_base))):
                return False
        if progress:
            progress(report.frames, total)
        frames.clear()
        return True

    for item in _items(pipe, decoded):
        kind, payload = item
        if kind == "audio":
            if not pipe.put(styled, item):
                return
            continue
        frames.append((hold(payload[0]), payload))
        if len(frames) >= report.batch and not flush():
            return
    if frames:
        flush()
    seconds = time.perf_counter() - tic
    report.processing_fps = round(report.frames / seconds, 2) if seconds > 0 else 0.0
    report.backend_busy = round(busy / seconds, 3) if seconds > 0 else 0.0
    report.flicker = meter.summary()


def _items(pipe: _Pipeline, q: queue.Queue) -> Iterator[tuple]:
    while True:
        item = pipe.get(q)
        if item is None or item is _END:
            if pipe.errors:
                raise pipe.errors[0]
            return
        yield item


def _encode(out, ain, fmt: str, rate: Fraction, report: VideoReport, pipe: _Pipeline,  # noqa: ANN001
            styled: queue.Queue) -> None:
    """Stage 3: encode frames and mux audio. Streams are created on the first frame, when the upright size
    is known; audio that arrives before it waits, since the muxer writes its header for all streams at once."""
    from av import VideoFrame

    video, aout, early_audio = None, None, []
    for kind, payload in _items(pipe, styled):
        if kind == "audio":
            if video is None:
                early_audio.append(payload)
            else:
                _write_audio(out, aout, payload)
            continue
        rgb, pts, time_base = payload
        if video is None:
            video = _add_video_stream(out, report, rate, time_base, rgb.shape)
            aout = _audio_stream(out, ain, fmt, report)
            for packet in early_audio:
                _write_audio(out, aout, packet)
            early_audio.clear()
        frame = VideoFrame.from_ndarray(rgb, format="rgb24")
        frame.pts, frame.time_base = pts, time_base
        for packet in video.encode(frame):
            out.mux(packet)
    if video is not None and not pipe.stop.is_set():
        for packet in video.encode(None):
            out.mux(packet)
        if aout is not None and aout[0] == "encode":
            for packet in aout[1].encode(None):
                out.mux(packet)


def _add_video_stream(out, report: VideoReport, rate: Fraction, time_base, shape: tuple):  # noqa: ANN001, ANN202
    height, width = shape[:2]
    stream = out.add_stream(report.video_codec, rate=rate)
    stream.width, stream.height = width, height
    # 4:2:0 needs even sizes; odd-sized videos keep their size in 4:4:4 instead.
    stream.pix_fmt = "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"
    if time_base is not None:
        stream.codec_context.time_base = time_base
    if report.video_codec == "libx264":
        stream.options = {"crf": "18", "preset": "medium"}
    report.width, report.height = width, height
    return stream


def _write_audio(out, aout, packet) -> None:  # noqa: ANN001
    if aout is None:
        return
    mode, stream = aout
    if mode == "copy":
        packet.stream = stream
        out.mux(packet)
        return
    for frame in packet.decode():
        frame.pts = None  # the encoder's resampler re-times the samples
        for encoded in stream.encode(frame):
            out.mux(encoded)
