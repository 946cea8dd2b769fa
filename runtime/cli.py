"""`stylecast stylize` and `stylecast info`: the torch-free half of the CLI."""

from __future__ import annotations

import glob
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Annotated

import numpy as np
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from stylecast.runtime.artifacts import read_metadata
from stylecast.runtime.backends import backend_class
from stylecast.runtime.errors import Interrupted, StylecastError
from stylecast.runtime.formats import BACKENDS, FILE_KINDS, BackendOptions
from stylecast.runtime.gallery import make_gallery
from stylecast.runtime.images import load_image, save_image
from stylecast.runtime.media import (
    KEEP_SUFFIXES,
    MEDIA_SUFFIXES,
    StylizeOptions,
    model_summary,
    output_name,
    run_video,
    stylize_image,
    tree_prefixes,
)
from stylecast.runtime.params import expand_options
from stylecast.runtime.ray_data import RayOptions, stylize_on_ray
from stylecast.runtime.stylizer import Stylizer
from stylecast.runtime.video import VIDEO_SUFFIXES, VideoReport


@dataclass
class Job:
    source: Path
    dest: Path

    @property
    def is_video(self) -> bool:
        return self.source.suffix.lower() in VIDEO_SUFFIXES


def expand_inputs(items: list[str]) -> list[tuple[Path, PurePosixPath]]:
    """Files, folders (recursively, images and videos) and glob patterns, in a stable order, each with the subfolder
    of --out its output goes to: a folder's tree is kept (under the folder's name when there are other inputs, as
    `--ray` keeps it), files and pattern matches go to --out itself.

    In folders, anything with a media suffix that is not a folder is taken, so broken links and
    special files are reported rather than silently skipped.
    """
    folders = [Path(item) for item in items if Path(item).is_dir()]
    prefixes = dict(zip(folders, tree_prefixes([str(f) for f in folders], len(items)), strict=True))
    found: list[tuple[Path, PurePosixPath]] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found += [(p, PurePosixPath(prefixes[path], p.parent.relative_to(path).as_posix()))
                      for p in sorted(path.rglob("*")) if p.suffix.lower() in MEDIA_SUFFIXES and not p.is_dir()]
        elif any(ch in item for ch in "*?["):
            matches = sorted(Path(m) for m in glob.glob(item, recursive=True) if not Path(m).is_dir())
            if not matches:
                raise StylecastError(f"{item}: pattern matches no files")
            found += [(m, PurePosixPath()) for m in matches]
        else:
            found.append((path, PurePosixPath()))  # a missing file is reported per file, not up front
    unique = list(dict(found).items())  # an input named twice is stylized once, where it was first named
    if not unique:
        raise StylecastError(f"no images or videos found in {' '.join(items)}")
    return unique


def check_out_outside(items: list[str], out: Path) -> None:
    """--out inside an input folder would have a rerun stylize its outputs again, as inputs."""
    for item in items:
        if Path(item).is_dir() and real_path(out).is_relative_to(real_path(Path(item))):
            raise StylecastError(f"--out {out} is inside the input folder {item}: its outputs would be read as "
                                 "inputs; choose an --out outside it")


def is_file_out(out: Path) -> bool:
    """``--out`` names one output file (not a folder) when it has a media suffix and is no folder."""
    return out.suffix.lower() in KEEP_SUFFIXES and not out.is_dir()


def real_path(path: Path) -> Path:
    """Where ``path`` really leads; a symlink loop has nowhere to lead, so it stands for itself."""
    try:
        return path.resolve()
    except (RuntimeError, OSError):
        return path.absolute()


def plan_outputs(sources: list[tuple[Path, PurePosixPath]], out: Path, tag: str) -> list[Job]:
    """``OUT/<subfolder>/<stem>.<tag><suffix>`` for each (input, subfolder) (or ``OUT`` itself for one input); an
    input is never a destination."""
    inputs = {real_path(p) for p, _ in sources}
    if is_file_out(out):
        if len(sources) != 1:
            raise StylecastError(f"--out {out} names one file but {len(sources)} inputs were given; give a folder")
        source = sources[0][0]
        source_is_video = source.suffix.lower() in VIDEO_SUFFIXES
        if source_is_video != (out.suffix.lower() in VIDEO_SUFFIXES):
            kind = "a video" if source_is_video else "an image"
            raise StylecastError(f"--out {out}: {source} is {kind}; give {kind} file name or a folder")
        planned = [Job(source, out)]
    else:
        prepare_folder(out)
        planned = []
        taken: set[Path] = set()
        for source, sub in sources:
            folder = out / sub
            dest = folder / output_name(source, tag, lambda name, f=folder: real_path(f / name) in taken)
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


def make_parent(dest: Path) -> None:
    """The subfolder an output of a folder's tree goes to; one that cannot be made fails that input alone."""
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StylecastError(f"{dest.parent}: cannot create this folder for {dest.name} ({exc.strerror or exc})") \
            from exc


def summarise(failures: list[tuple[Path, str]]) -> str:
    """'2 not an image Pillow can read, 1 no such file': failures grouped by reason."""
    reasons = Counter(message.removeprefix(f"{source}: ").split(" (")[0].split(";")[0]
                      for source, message in failures)
    return ", ".join(f"{n} {reason}" for reason, n in reasons.most_common())


@expand_options
def stylize(
    inputs: Annotated[list[str], typer.Argument(help="Images, videos, folders or glob patterns.")],
    model: Annotated[list[Path], typer.Option(help="Model (.onnx or .engine); repeat to chain models in order.")],
    settings: StylizeOptions,
    backend_options: BackendOptions,
    ray_options: RayOptions,
    out: Annotated[str, typer.Option(help="Output folder (with --ray also a URI), or one output file for a single "
                                          "input.")] = "stylized",
    gallery: Annotated[Path | None, typer.Option(help="Also write a side-by-side PNG of inputs and outputs.")] = None,
    gallery_style: Annotated[Path | None, typer.Option(help="Style image to show atop the gallery.")] = None,
) -> None:
    """Stylize images and videos with an exported model; continues past bad files and sums up at the end. With
    --ray, as a Ray Data job on a cluster: folders and buckets of any size, reruns skip what is done."""
    settings.check()
    if ray_options.wanted:
        if gallery:
            raise StylecastError("--gallery is made on one machine: leave it out with --ray, or run without --ray")
        stylize_ray(inputs, model, out, settings, backend_options, ray_options)
        return
    folder = Path(out)
    check_out_outside(inputs, folder)
    stylizer = Stylizer(model, strength=settings.strength, options=backend_options, style=settings.style)
    jobs = plan_outputs(expand_inputs(inputs), folder, stylizer.style)
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
                    make_parent(job.dest)
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
                          f"{folder}); finished outputs are complete and no partial file was left") from exc
    if gallery and pairs:
        style_rgb = load_image(gallery_style).rgb if gallery_style else None
        make_gallery(pairs, gallery, title=f"stylecast: {stylizer.style} ({stylizer.precision})", style=style_rgb)
        console.print(f"gallery: {gallery}", markup=False)
    ok = len(jobs) - len(failures)
    where = folder.parent if is_file_out(folder) else folder
    console.print(f"{ok} stylized into {where}, {len(failures)} failed" +
                  (f": {summarise(failures)}" if failures else ""), markup=False)
    if failures:
        raise typer.Exit(1)



def stylize_ray(inputs: list[str], model: list[Path], out: str, settings: StylizeOptions,
                backend_options: BackendOptions, ray_options: RayOptions) -> None:
    """`stylize --ray`: the job's own progress bars, each failure as it comes, then one summary line."""
    console = Console(stderr=True, highlight=False, soft_wrap=True)

    def show(row: dict) -> None:
        if row["status"] == "failed":
            console.print(f"failed: {row['reason']}", markup=False, style="red")
        elif row.get("note"):
            console.print(f"{row['name']}: {row['note']}", markup=False)

    summary = stylize_on_ray(inputs, model, out, settings, backend_options, ray_options, show)
    failures = summary.failures
    console.print(f"{summary.stylized} stylized, {summary.skipped} skipped (done before), {len(failures)} failed into "
                  f"{out} in {summary.seconds:.1f} s ({summary.rate:.2f} stylized/s)" +
                  (f": {summarise(failures)}; see {summary.report}" if failures else ""), markup=False)
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
        image = load_image(job.source, allow_huge=self.settings.allow_huge)
        rgb, result, alpha = stylize_image(self.stylizer, image, self.settings,
                                           lambda n, total: self.status(f"{job.source.name} tile {n}/{total}"))
        save_image(job.dest, result, alpha, quality=self.settings.quality)
        if image.note:
            self.console.print(f"{job.source}: {image.note}", markup=False)
        return rgb, result

    def video(self, job: Job) -> VideoReport:
        started = time.perf_counter()

        def frames_done(n: int, total: int | None) -> None:
            fps = n / max(time.perf_counter() - started, 1e-9)
            self.status(f"{job.source.name} frame {n}/{total or '?'} {fps:.1f} fps")

        report = run_video(self.stylizer, job.source, job.dest, self.settings,
                           model_summary(self.stylizer, self.models), frames_done)
        self.console.print(video_summary(report), markup=False)
        return report


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
