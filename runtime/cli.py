"""`stylecast stylize` and `stylecast info`: the torch-free half of the CLI."""

from __future__ import annotations

import glob
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from stylecast.runtime.artifacts import read_metadata, sha256_file
from stylecast.runtime.errors import Interrupted, StylecastError
from stylecast.runtime.gallery import make_gallery
from stylecast.runtime.images import IMAGE_SUFFIXES, load_image, resize_max_side, save_image
from stylecast.runtime.stylizer import Stylizer
from stylecast.runtime.temporal import check_blend, check_hold
from stylecast.runtime.tiling import AUTO_TILE_LONG_SIDE, DEFAULT_OVERLAP, DEFAULT_TILE, check_tiling, stylize_tiled
from stylecast.runtime.video import VIDEO_SUFFIXES, VideoReport, stylize_video

_KEEP_SUFFIX = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", *VIDEO_SUFFIXES}
MEDIA_SUFFIXES = IMAGE_SUFFIXES | VIDEO_SUFFIXES


@dataclass
class Job:
    source: Path
    dest: Path

    @property
    def is_video(self) -> bool:
        return self.source.suffix.lower() in VIDEO_SUFFIXES


def expand_inputs(items: list[str]) -> list[Path]:
    """Files, folders (recursively, images and videos) and glob patterns, in a stable order.

    In folders, anything with a media suffix that is not a folder is taken, so broken links and
    special files are reported rather than silently skipped.
    """
    found: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.suffix.lower() in MEDIA_SUFFIXES and not p.is_dir())
        elif any(ch in item for ch in "*?["):
            matches = sorted(Path(m) for m in glob.glob(item, recursive=True) if not Path(m).is_dir())
            if not matches:
                raise StylecastError(f"{item}: pattern matches no files")
            found += matches
        else:
            found.append(path)  # a missing file is reported per file, not up front
    unique = list(dict.fromkeys(found))
    if not unique:
        raise StylecastError(f"no images or videos found in {' '.join(items)}")
    return unique


def is_file_out(out: Path) -> bool:
    """``--out`` names one output file (not a folder) when it has a media suffix and is no folder."""
    return out.suffix.lower() in _KEEP_SUFFIX and not out.is_dir()


def real_path(path: Path) -> Path:
    """Where ``path`` really leads; a symlink loop has nowhere to lead, so it stands for itself."""
    try:
        return path.resolve()
    except (RuntimeError, OSError):
        return path.absolute()


def plan_outputs(sources: list[Path], out: Path, tag: str) -> list[Job]:
    """``OUT/<stem>.<tag><suffix>`` (or ``OUT`` itself for one input); an input is never a destination."""
    inputs = {real_path(p) for p in sources}
    if is_file_out(out):
        if len(sources) != 1:
            raise StylecastError(f"--out {out} names one file but {len(sources)} inputs were given; give a folder")
        source_is_video = sources[0].suffix.lower() in VIDEO_SUFFIXES
        if source_is_video != (out.suffix.lower() in VIDEO_SUFFIXES):
            kind = "a video" if source_is_video else "an image"
            raise StylecastError(f"--out {out}: {sources[0]} is {kind}; give {kind} file name or a folder")
        planned = [Job(sources[0], out)]
    else:
        prepare_folder(out)
        planned = []
        taken: set[Path] = set()
        for source in sources:
            suffix = source.suffix.lower() if source.suffix.lower() in _KEEP_SUFFIX else ".png"
            dest = out / f"{source.stem}.{tag}{suffix}"
            n = 1
            while real_path(dest) in taken:
                n += 1
                dest = out / f"{source.stem}.{tag}-{n}{suffix}"
            taken.add(real_path(dest))
            planned.append(Job(source, dest))
    for job in planned:
        if real_path(job.dest) in inputs:
            raise StylecastError(f"{job.dest}: output would overwrite an input; choose another --out")
    return planned


def prepare_folder(out: Path) -> None:
    """Create the output folder up front, so an unusable --out fails once, not once per file."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except FileExistsError as exc:
        raise StylecastError(f"--out {out}: exists and is not a folder; choose another --out") from exc
    except OSError as exc:
        raise StylecastError(f"--out {out}: cannot create this folder ({exc.strerror or exc}); "
                             "choose another --out") from exc


def run_image(stylizer: Callable[[np.ndarray], np.ndarray], rgb: np.ndarray, tile: int | None, overlap: int,
              progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """Whole-image inference, or tiled when asked (``tile``) or when the image is large (``None``).

    ``stylizer`` is a :class:`Stylizer` or any HxWx3 uint8 -> HxWx3 uint8 callable (a server's per-request strength)."""
    if tile is None:
        tile = DEFAULT_TILE if max(rgb.shape[:2]) > AUTO_TILE_LONG_SIDE else 0
    if tile and max(rgb.shape[:2]) > tile:
        return stylize_tiled(stylizer, rgb, tile, overlap, progress)
    return stylizer(rgb)


def frame_runner(stylizer: Stylizer, tile: int | None, overlap: int) -> Callable[[list[np.ndarray]], list[np.ndarray]]:
    """Video frames run as batches, unless they are large enough to need tiles (4K and up by default)."""
    def run(frames: list[np.ndarray]) -> list[np.ndarray]:
        side = max(frames[0].shape[:2])
        if tile or (tile is None and side > AUTO_TILE_LONG_SIDE):
            return [run_image(stylizer, frame, tile, overlap) for frame in frames]
        return stylizer.stylize_batch(frames)

    return run


def summarise(failures: list[tuple[Path, str]]) -> str:
    """'2 not an image Pillow can read, 1 no such file': failures grouped by reason."""
    reasons = Counter(message.removeprefix(f"{source}: ").split(" (")[0].split(";")[0]
                      for source, message in failures)
    return ", ".join(f"{n} {reason}" for reason, n in reasons.most_common())


def stylize(
    inputs: Annotated[list[str], typer.Argument(help="Images, videos, folders or glob patterns.")],
    model: Annotated[list[Path], typer.Option(help="Model (.onnx or .engine); repeat to chain models in order.")],
    out: Annotated[Path, typer.Option(help="Output folder, or one output file for a single input.")] = Path("stylized"),
    max_side: Annotated[int | None, typer.Option(help="Downscale inputs so the long side is at most this.")] = None,
    backend: Annotated[str, typer.Option(help="auto (ONNX Runtime for .onnx), onnxruntime, openvino (x86 CPUs, "
                                              "Intel GPUs/NPUs) or tensorrt.")] = "auto",
    provider: Annotated[list[str] | None, typer.Option(help="ONNX Runtime provider(s), in order; with --backend "
                                                            "openvino its device (CPU, GPU, NPU, AUTO).")] = None,
    threads: Annotated[int | None, typer.Option(help="Inference threads (default: backend's choice).")] = None,
    openvino_precision: Annotated[str, typer.Option(help="--backend openvino on a CPU: f32 (the graph's own "
                                                         "precision), bf16, or auto (bf16 where measured faster; "
                                                         "lower parity).")] = "f32",
    gallery: Annotated[Path | None, typer.Option(help="Also write a side-by-side PNG of inputs and outputs.")] = None,
    gallery_style: Annotated[Path | None, typer.Option(help="Style image to show atop the gallery.")] = None,
    allow_huge: Annotated[bool, typer.Option(help="Lift Pillow's decompression-bomb limit.")] = False,
    quality: Annotated[int, typer.Option(help="JPEG/WebP quality.")] = 95,
    tile: Annotated[int | None, typer.Option(
        help=f"Tile size for large images (default: {DEFAULT_TILE} above a {AUTO_TILE_LONG_SIDE}px long side; "
             "0 = never).")] = None,
    overlap: Annotated[int, typer.Option(help="Pixels shared by neighbouring tiles, blended smoothly.")] = DEFAULT_OVERLAP,
    temporal_blend: Annotated[float, typer.Option(help="Video: blend up to this share of the previous output "
                                                       "where the input did not change (0 = off).")] = 0.0,
    input_hold: Annotated[float, typer.Option(help="Video: an input pixel passes to the net only once it moves "
                                                   "more than this many grey levels (0 = off; 3 steadies a still "
                                                   "camera's codec noise).")] = 0.0,
    video_batch: Annotated[int, typer.Option(min=1, help="Video: frames per inference call.")] = 1,
    strength: Annotated[float, typer.Option(help="Style strength: 1 full style, 0 the photo (a blend between).")] = 1.0,
) -> None:
    """Stylize images and videos with an exported model; continues past bad files and sums up at the end."""
    if tile:
        check_tiling(tile, overlap)
    check_blend(temporal_blend)
    check_hold(input_hold)
    stylizer = Stylizer(model, backend=backend, providers=provider, threads=threads, strength=strength,
                        openvino_precision=openvino_precision)
    jobs = plan_outputs(expand_inputs(inputs), out, stylizer.style)
    console = Console(stderr=True, highlight=False, soft_wrap=True)
    failures: list[tuple[Path, str]] = []
    pairs: list[tuple[np.ndarray, np.ndarray]] = []
    columns = [TextColumn(f"[bold]{stylizer.style}[/] via {stylizer.backend.describe()}"), BarColumn(),
               MofNCompleteColumn(), TextColumn("{task.fields[detail]}"), TimeElapsedColumn()]
    done = 0
    try:
        with Progress(*columns, console=console, transient=False) as bar:
            task = bar.add_task("stylize", total=len(jobs), detail="")
            run = Run(stylizer, model, console, lambda text: bar.update(task, detail=text), max_side=max_side,
                      allow_huge=allow_huge, quality=quality, tile=tile, overlap=overlap,
                      temporal_blend=temporal_blend, input_hold=input_hold, video_batch=video_batch)
            for job in jobs:
                try:
                    if job.is_video:
                        run.video(job)
                    else:
                        pair = run.image(job)
                        if gallery:
                            pairs.append(pair)
                except StylecastError as exc:
                    failures.append((job.source, str(exc)))
                    console.print(f"failed: {exc}", markup=False, style="red")
                done += 1
                bar.update(task, advance=1, detail="")
    except KeyboardInterrupt as exc:
        raise Interrupted(f"interrupted after {done} of {len(jobs)} inputs ({done - len(failures)} stylized into "
                          f"{out}); finished outputs are complete and no partial file was left") from exc
    if gallery and pairs:
        style_rgb = load_image(gallery_style).rgb if gallery_style else None
        make_gallery(pairs, gallery, title=f"stylecast: {stylizer.style} ({stylizer.precision})", style=style_rgb)
        console.print(f"gallery: {gallery}", markup=False)
    ok = len(jobs) - len(failures)
    where = out.parent if is_file_out(out) else out
    console.print(f"{ok} stylized into {where}, {len(failures)} failed" +
                  (f": {summarise(failures)}" if failures else ""), markup=False)
    if failures:
        raise typer.Exit(1)


@dataclass
class Run:
    """One `stylecast stylize` invocation's model and settings, applied to one input at a time."""

    stylizer: Stylizer
    models: list[Path]  # one, or a chain run in order
    console: Console
    status: Callable[[str], None]  # a short progress note beside the bar
    max_side: int | None = None
    allow_huge: bool = False
    quality: int = 95
    tile: int | None = None
    overlap: int = DEFAULT_OVERLAP
    temporal_blend: float = 0.0
    input_hold: float = 0.0
    video_batch: int = 1

    def image(self, job: Job) -> tuple[np.ndarray, np.ndarray]:
        """Stylize and save one image; returns (input, output) for the gallery."""
        image = load_image(job.source, allow_huge=self.allow_huge)
        rgb = resize_max_side(image.rgb, self.max_side)
        alpha = None if image.alpha is None else resize_max_side(image.alpha, self.max_side)
        result = run_image(self.stylizer, rgb, self.tile, self.overlap,
                           progress=lambda n, total: self.status(f"{job.source.name} tile {n}/{total}"))
        save_image(job.dest, result, alpha, quality=self.quality)
        if image.note:
            self.console.print(f"{job.source}: {image.note}", markup=False)
        return rgb, result

    def video(self, job: Job) -> VideoReport:
        started = time.perf_counter()

        def frames_done(n: int, total: int | None) -> None:
            fps = n / max(time.perf_counter() - started, 1e-9)
            self.status(f"{job.source.name} frame {n}/{total or '?'} {fps:.1f} fps")

        report = stylize_video(job.source, job.dest, frame_runner(self.stylizer, self.tile, self.overlap),
                               batch=self.video_batch, temporal_blend=self.temporal_blend,
                               input_hold=self.input_hold, progress=frames_done,
                               model_meta=model_summary(self.stylizer, self.models))
        self.console.print(video_summary(report), markup=False)
        return report


def model_summary(stylizer: Stylizer, models: list[Path]) -> dict[str, str]:
    """The model lineage a video's sidecar and container tags carry (a chain joins its models with '+')."""
    meta = stylizer.backend.metadata
    return {"model": "+".join(str(m) for m in models), "model_sha256": "+".join(sha256_file(m) for m in models),
            **{k: meta[k] for k in ("arch", "source_sha256", "versions") if k in meta},
            "style": stylizer.style, "precision": stylizer.precision}


def video_summary(report: VideoReport) -> str:
    flicker = report.flicker.get("ratio")
    return (f"{report.source}: {report.frames} frames {report.width}x{report.height} @ {report.fps:g} fps, "
            f"audio {report.audio}, {report.processing_fps:g} fps processed (backend busy "
            f"{report.backend_busy:.0%}), flicker ratio "
            f"{'n/a' if flicker is None else f'{flicker:.2f}'} (output vs input frame-to-frame change); "
            f"report {report.output}.json")


def info(artifact: Annotated[Path, typer.Argument(help="Checkpoint, ONNX model, engine or report.")]) -> None:
    """Print an artifact's metadata (style, architecture, precision, hashes, versions) as JSON."""
    typer.echo(json.dumps(read_metadata(artifact), indent=2, sort_keys=True))
