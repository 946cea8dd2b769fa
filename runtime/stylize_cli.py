"""`stylecast stylize` and `stylecast info`: the torch-free half of the CLI."""

from __future__ import annotations

import glob
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from .artefacts import read_metadata
from .errors import StylecastError
from .gallery import make_gallery
from .images import IMAGE_SUFFIXES, load_image, resize_max_side, save_image
from .stylizer import Stylizer

_KEEP_SUFFIX = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}


@dataclass
class Job:
    source: Path
    dest: Path


def expand_inputs(items: list[str]) -> list[Path]:
    """Files, folders (recursively, images only) and glob patterns, in a stable order."""
    found: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        elif any(ch in item for ch in "*?["):
            matches = sorted(Path(m) for m in glob.glob(item, recursive=True) if Path(m).is_file())
            if not matches:
                raise StylecastError(f"{item}: pattern matches no files")
            found += matches
        else:
            found.append(path)  # a missing file is reported per file, not up front
    unique = list(dict.fromkeys(found))
    if not unique:
        raise StylecastError(f"no images found in {' '.join(items)}")
    return unique


def plan_outputs(sources: list[Path], out_dir: Path, tag: str) -> list[Job]:
    """``OUT/<stem>.<tag><suffix>``; clashes get a counter; an input is never a destination."""
    inputs = {p.resolve() for p in sources}
    taken: set[Path] = set()
    jobs = []
    for source in sources:
        suffix = source.suffix.lower() if source.suffix.lower() in _KEEP_SUFFIX else ".png"
        dest = out_dir / f"{source.stem}.{tag}{suffix}"
        n = 1
        while dest.resolve() in taken:
            n += 1
            dest = out_dir / f"{source.stem}.{tag}-{n}{suffix}"
        if dest.resolve() in inputs:
            raise StylecastError(f"{dest}: output would overwrite an input; choose another --out")
        taken.add(dest.resolve())
        jobs.append(Job(source, dest))
    return jobs


def stylize(
    inputs: Annotated[list[str], typer.Argument(help="Images, folders or glob patterns.")],
    model: Annotated[list[Path], typer.Option(help="Model (.onnx or .engine); repeat to chain models in order.")],
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("stylized"),
    max_side: Annotated[int | None, typer.Option(help="Downscale inputs so the long side is at most this.")] = None,
    backend: Annotated[str, typer.Option(help="auto, onnxruntime or tensorrt.")] = "auto",
    provider: Annotated[list[str] | None, typer.Option(help="ONNX Runtime provider(s), in order.")] = None,
    threads: Annotated[int | None, typer.Option(help="Inference threads (default: backend's choice).")] = None,
    gallery: Annotated[Path | None, typer.Option(help="Also write a side-by-side PNG of inputs and outputs.")] = None,
    gallery_style: Annotated[Path | None, typer.Option(help="Style image to show atop the gallery.")] = None,
    allow_huge: Annotated[bool, typer.Option(help="Lift Pillow's decompression-bomb limit.")] = False,
    quality: Annotated[int, typer.Option(help="JPEG/WebP quality.")] = 95,
    strength: Annotated[float, typer.Option(help="Style strength: 1 full style, 0 the photo (a blend between).")] = 1.0,
) -> None:
    """Stylize images with an exported model; continues past bad files and sums up at the end."""
    stylizer = Stylizer(model, backend=backend, providers=provider, threads=threads, strength=strength)
    jobs = plan_outputs(expand_inputs(inputs), out, stylizer.style)
    console = Console(stderr=True, highlight=False)
    failures: list[str] = []
    pairs: list[tuple[np.ndarray, np.ndarray]] = []
    columns = [TextColumn(f"[bold]{stylizer.style}[/] via {stylizer.backend.describe()}"), BarColumn(),
               MofNCompleteColumn(), TimeElapsedColumn()]
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task("stylize", total=len(jobs))
        for job in jobs:
            try:
                image = load_image(job.source, allow_huge=allow_huge)
                rgb = resize_max_side(image.rgb, max_side)
                alpha = None if image.alpha is None else resize_max_side(image.alpha, max_side)
                result = stylizer(rgb)
                save_image(job.dest, result, alpha, quality=quality)
                if image.note:
                    console.print(f"{job.source}: {image.note}", markup=False)
                if gallery:
                    pairs.append((rgb, result))
            except StylecastError as exc:
                failures.append(str(exc))
                console.print(f"failed: {exc}", markup=False, style="red")
            bar.advance(task)
    if gallery and pairs:
        style_rgb = load_image(gallery_style).rgb if gallery_style else None
        make_gallery(pairs, gallery, title=f"stylecast: {stylizer.style} ({stylizer.precision})", style=style_rgb)
        console.print(f"gallery: {gallery}", markup=False)
    ok = len(jobs) - len(failures)
    console.print(f"{ok} stylized into {out}, {len(failures)} failed", markup=False)
    if failures:
        raise typer.Exit(1)


def info(artefact: Annotated[Path, typer.Argument(help="Checkpoint, ONNX model, engine or report.")]) -> None:
    """Print an artefact's metadata (style, architecture, precision, hashes, versions) as JSON."""
    typer.echo(json.dumps(read_metadata(artefact), indent=2, sort_keys=True))
