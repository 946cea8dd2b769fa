"""`stylecast export` and `stylecast build-engine`: imported by the CLI without importing torch or onnx.

build-engine is torch-free, so it runs on the Jetson that will use the engine."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from stylecast.runtime.options import need_torch, parse_size


def _calibration_hw(resolution: str, deprecated_hxw: str | None) -> tuple[int, int]:
    """(height, width) from --calibration-resolution WxH, or from the old --calibration-size HxW with a warning."""
    if deprecated_hxw is not None:
        typer.echo("warning: --calibration-size HxW is deprecated; use --calibration-resolution WIDTHxHEIGHT", err=True)
        height, width = parse_size(deprecated_hxw, "--calibration-size")
        return height, width
    size = parse_size(resolution, "--calibration-resolution")
    return size.height, size.width


def export(
    checkpoint: Annotated[Path, typer.Argument(help="Trained checkpoint (.safetensors).")],
    out: Annotated[Path | None, typer.Option(help="Output folder (default: artifacts/<checkpoint name>).")] = None,
    precision: Annotated[str, typer.Option(help="Comma-separated precisions to export.")] = "fp32",
    parity_images: Annotated[Path, typer.Option(help="Real photos for the parity check.")] = Path("benchmarks/photos"),
    force: Annotated[bool, typer.Option(help="Re-export even if the ONNX is current.")] = False,
    calibration_images: Annotated[Path | None, typer.Option(
        help="int8: real photos to calibrate on (parity photos are excluded by content).")] = None,
    calibration_count: Annotated[int, typer.Option(help="int8: how many photos calibrate.")] = 16,
    calibration_resolution: Annotated[str, typer.Option(
        help="int8: deployment size WIDTHxHEIGHT the scales are set for.")] = "256x256",
    calibration_size: Annotated[str | None, typer.Option(hidden=True, help="Deprecated (HxW).")] = None,
    int8_method: Annotated[str, typer.Option(
        help="int8 calibration: auto (measure minmax, entropy, percentile; keep the best), or one of them.")] = "auto",
    int8_fp32_convs: Annotated[str, typer.Option(
        help="int8: leading convs kept fp32 (the last conv always is): auto (fewest reaching 40 dB on "
             "selection photos) or a count.")] = "auto",
    triton: Annotated[Path | None, typer.Option(help="Also write a Triton model repository here.")] = None,
    allow_below_floor: Annotated[str, typer.Option(
        help="Comma-separated precisions kept (marked below_target in report.json) when they miss their floor.")] = "",
) -> None:
    """Export a checkpoint to ONNX and prove parity with PyTorch on real photos (report.json)."""
    need_torch("export")
    from stylecast.export.pipeline import ExportRequest, phases, run_export
    from stylecast.export.precisions import Int8Settings, parse_count
    from stylecast.runtime.artifacts import safetensors_metadata

    style = safetensors_metadata(checkpoint).get("style", checkpoint.stem) if checkpoint.is_file() else "model"
    out_dir = out or Path("artifacts") / checkpoint.stem
    request = ExportRequest(checkpoint=checkpoint, out_dir=out_dir,
                            precisions=[p.strip() for p in precision.split(",") if p.strip()],
                            parity_images=parity_images, force=force,
                            int8=Int8Settings(calibration_images, calibration_count,
                                              _calibration_hw(calibration_resolution, calibration_size),
                                              int8_method, fp32_leading=parse_count(int8_fp32_convs)),
                            allow_below_floor=frozenset(p.strip() for p in allow_below_floor.split(",") if p.strip()))
    with Progress(SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn()) as bar:
        task = bar.add_task(f"export {style}", total=phases(request))
        report = run_export(request, log=bar.console.print,
                            step=lambda done: bar.update(task, description=done, advance=1))
    for entry in report["exports"]:
        worst = min(p["psnr_min"] for p in entry["parity"])
        verdict = "BELOW TARGET" if entry.get("below_target") else "ok"
        typer.echo(f"{out_dir / entry['file']}: parity {worst:.1f} dB (floor {entry['psnr_floor_db']:.0f}) {verdict}")
    if triton:
        from stylecast.export.triton import export_repository

        for folder in export_repository(triton, [out_dir / e["file"] for e in report["exports"]]):
            typer.echo(f"{folder / 'config.pbtxt'}: Triton model")


def build_engine(
    model: Annotated[Path, typer.Argument(help="ONNX model exported by `stylecast export`.")],
    out: Annotated[Path | None, typer.Option(help="Output folder (default: beside the ONNX).")] = None,
    min_shape: Annotated[str, typer.Option("--min", help="Smallest input NxCxHxW of the profile.")] = "1x3x64x64",
    opt_shape: Annotated[str, typer.Option("--opt", help="Input NxCxHxW TensorRT tunes for.")] = "1x3x512x512",
    max_shape: Annotated[str, typer.Option("--max", help="Largest input NxCxHxW of the profile.")] = "4x3x1024x1024",
    workspace_mib: Annotated[int, typer.Option(help="Builder workspace limit in MiB.")] = 1024,
    timing_cache: Annotated[Path | None, typer.Option(help="Timing cache file, reused across builds.")] = None,
    verbose: Annotated[bool, typer.Option(help="TensorRT's verbose build log.")] = False,
) -> None:
    """Build NAME.<precision>.<gpu>.<trt>.engine (+ .json sidecar) for this GPU from an exported ONNX."""
    from stylecast.export import tensorrt_build
    from stylecast.runtime.artifacts import read_metadata, require
    from stylecast.runtime.cache import cache_dir

    profile = tensorrt_build.Profile.parse(min_shape, opt_shape, max_shape)
    meta = read_metadata(model)
    require(meta, "onnx", model)
    trt = tensorrt_build.import_tensorrt()
    from stylecast.runtime.backends.cuda_device import open_device

    name, capability = open_device().describe()
    target = tensorrt_build.Target(trt.__version__, name, capability)
    cache = timing_cache or cache_dir() / "tensorrt" / f"timing.{tensorrt_build.slug(name)}.trt{trt.__version__}.cache"
    dest = tensorrt_build.build_engine(model, meta, out or model.parent, profile, workspace_mib, cache, target, verbose)
    typer.echo(f"{dest}: {meta['precision']} engine for {name} (sm {capability}), TensorRT {trt.__version__}; "
               f"profile {profile.as_text()}")
