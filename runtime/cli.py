"""`stylecast stylize` and `stylecast info`: the torch-free half of the CLI."""

from __future__ import annotations

import glob
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from stylecast.runtime.artifacts import read_metadata, sha256_file
from stylecast.runtime.backends import backend_class
from stylecast.runtime.errors import Interrupted, StylecastError
from stylecast.runtime.formats import BACKENDS, FILE_KINDS, BackendOptions
from stylecast.runtime.gallery import make_gallery
from stylecast.runtime.images import IMAGE_SUFFIXES, load_image, resize_max_side, save_image
from stylecast.runtime.params import expand_options, option
from stylecast.runtime.stylizer import Stylizer
from stylecast.runtime.temporal import check_blend, check_hold
from stylecast.runtime.tiling import (
    AUTO_TILE_LONG_SIDE,
    DEFAULT_OVERLAP,
    DEFAULT_TILE,
    DEFAULT_TILE_NORM,
    check_tile_norm,
    check_tiling,
    stylize_tiled,
)
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


def run_image(stylizer: Stylizer, rgb: np.ndarray, tile: int | None, overlap: int,
              progress: Callable[[int, int], None] | None = None, norm: str = DEFAULT_TILE_NORM,
              strength: float | None = None) -> np.ndarray:
    """Whole-image inference, or tiled when asked (``tile``) or when the image is large (``None``); tiles are
    normalised by statistics that stand for the whole image (``norm``: mosaic or thumbnail) or each by its own
    (``"tile"``).
    ``strength`` overrides the stylizer's own (a server's per-request choice)."""
    strengths = None if strength is None else [strength]
    if tile is None:
        tile = DEFAULT_TILE if max(rgb.shape[:2]) > AUTO_TILE_LONG_SIDE else 0
    if tile and max(rgb.shape[:2]) > tile:
        stats = None if norm == "tile" else stylizer.tile_stats(rgb, norm)
        return stylize_tiled(lambda part: stylizer.stylize_batch([part], strengths, stats)[0], rgb, tile, overlap,
                             progress)
    return stylizer.stylize_batch([rgb], strengths)[0]


def frame_runner(stylizer: Stylizer, tile: int | None, overlap: int,
                 norm: str = DEFAULT_TILE_NORM) -> Callable[[list[np.ndarray]], list[np.ndarray]]:
    """Video frames run as batches, unless they are large enough to need tiles (4K and up by default)."""
    def run(frames: list[np.ndarray]) -> list[np.ndarray]:
        side = max(frames[0].shape[:2])
        if tile or (tile is None and side > AUTO_TILE_LONG_SIDE):
            return [run_image(stylizer, frame, tile, overlap, norm=norm) for frame in frames]
        return stylizer.stylize_batch(frames)

    return run


def summarise(failures: list[tuple[Path, str]]) -> str:
    """'2 not an image Pillow can read, 1 no such file': failures grouped by reason."""
    reasons = Counter(message.removeprefix(f"{source}: ").split(" (")[0].split(";")[0]
                      for source, message in failures)
    return ", ".join(f"{n} {reason}" for reason, n in reasons.most_common())


@dataclass
class StylizeOptions:
    """How `stylecast stylize` treats each input (the backend's options are their own group)."""

    max_side: int | None = option(None, "Downscale inputs so the long side is at most this.")
    allow_huge: bool = option(False, "Lift Pillow's decompression-bomb limit.")
    quality: int = option(95, "JPEG/WebP quality.")
    tile: int | None = option(None, f"Tile size for large images (default: {DEFAULT_TILE} above a "
                                    f"{AUTO_TILE_LONG_SIDE}px long side; 0 = never).")
    overlap: int = option(DEFAULT_OVERLAP, "Pixels shared by neighbouring tiles, blended smoothly.")
    tile_norm: str = option(DEFAULT_TILE_NORM, "How tiles are normalised: mosaic (by the whole image's "
                                               "statistics, from full-resolution patches: no patchwork), thumbnail "
                                               "(from a 1024 px copy: less memory, colours further off) or tile "
                                               "(each by its own: a patchwork; for comparison).")
    temporal_blend: float = option(0.0, "Video: blend up to this share of the previous output where the input did "
                                        "not change (0 = off).")
    input_hold: float = option(0.0, "Video: an input pixel passes to the net only once it moves more than this many "
                                    "grey levels (0 = off; 3 steadies a still camera's codec noise).")
    video_batch: int = option(1, "Video: frames per inference call.", min=1)
    strength: float = option(1.0, "Style strength: 1 full style, 0 the photo (a blend between).")

    def check(self) -> None:
        check_tile_norm(self.tile_norm)
        if self.tile:
            check_tiling(self.tile, self.overlap)
        check_blend(self.temporal_blend)
        check_hold(self.input_hold)


@expand_options
def stylize(
    inputs: Annotated[list[str], typer.Argument(help="Images, videos, folders or glob patterns.")],
    model: Annotated[list[Path], typer.Option(help="Model (.onnx or .engine); repeat to chain models in order.")],
    settings: StylizeOptions,
    backend_options: BackendOptions,
    out: Annotated[Path, typer.Option(help="Output folder, or one output file for a single input.")] = Path("stylized"),
    gallery: Annotated[Path | None, typer.Option(help="Also write a side-by-side PNG of inputs and outputs.")] = None,
    gallery_style: Annotated[Path | None, typer.Option(help="Style image to show atop the gallery.")] = None,
) -> None:
    """Stylize images and videos with an exported model; continues past bad files and sums up at the end."""
    settings.check()
    stylizer = Stylizer(model, strength=settings.strength, options=backend_options)
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
            run = Run(stylizer, model, console, lambda text: bar.update(task, detail=text), settings)
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
    settings: StylizeOptions = field(default_factory=StylizeOptions)

    def image(self, job: Job) -> tuple[np.ndarray, np.ndarray]:
        """Stylize and save one image; returns (input, output) for the gallery."""
        settings = self.settings
        image = load_image(job.source, allow_huge=settings.allow_huge)
        rgb = resize_max_side(image.rgb, settings.max_side)
        alpha = None if image.alpha is None else resize_max_side(image.alpha, settings.max_side)
        result = run_image(self.stylizer, rgb, settings.tile, settings.overlap,
                           progress=lambda n, total: self.status(f"{job.source.name} tile {n}/{total}"),
                           norm=settings.tile_norm)
        save_image(job.dest, result, alpha, quality=settings.quality)
        if image.note:
            self.console.print(f"{job.source}: {image.note}", markup=False)
        return rgb, result

    def video(self, job: Job) -> VideoReport:
        started = time.perf_counter()

        def frames_done(n: int, total: int | None) -> None:
            fps = n / max(time.perf_counter() - started, 1e-9)
            self.status(f"{job.source.name} frame {n}/{total or '?'} {fps:.1f} fps")

        settings = self.settings
        runner = frame_runner(self.stylizer, settings.tile, settings.overlap, settings.tile_norm)
        report = stylize_video(job.source, job.dest, runner,
                               batch=settings.video_batch, temporal_blend=settings.temporal_blend,
                               input_hold=settings.input_hold, progress=frames_done,
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


def info(artifact: Annotated[Path | None, typer.Argument(
        help="Checkpoint, ONNX model, engine or report; none: the format table.")] = None) -> None:
    """Print an artifact's metadata (style, architecture, precision, hashes, versions) as JSON, or without one
    the format table: each file kind, the backends that run it and whether each is installed here."""
    if artifact is not None:
        typer.echo(json.dumps(read_metadata(artifact), indent=2, sort_keys=True))
        return
    table = Table("file kind", "suffixes", "backends (default first)", "metadata", box=None)
    for kind in FILE_KINDS.values():
        table.add_row(kind.name, " ".join(kind.suffixes), ", ".join(kind.backends) or "-", kind.metadata)
    engines = Table("backend", "label", "runs", "here", "install", box=None)
    for name, row in BACKENDS.items():
        why = backend_class(name).unavailable()
        engines.add_row(*(escape(cell) for cell in (name, row.label, row.summary,
                                                     (why or "installed").removeprefix("skipped: "),
                                                     f"pip install 'stylecast[{row.extra}]'")))
    console = Console(highlight=False, soft_wrap=True, width=200)
    console.print(table)
    console.print()
    console.print(engines)
