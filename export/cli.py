"""`stylecast export`, `stylecast check-trt` and `stylecast build-engine`: imported by the CLI without importing
torch or onnx.

check-trt and build-engine are torch-free, so they run on the Jetson that will use the engine."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from stylecast.export.precisions import Int8Settings
from stylecast.runtime.backends.tensorrt import ENGINE_PROFILE, Profile
from stylecast.runtime.errors import StylecastError
from stylecast.runtime.options import need_torch, parse_size
from stylecast.runtime.params import expand_options

MinShape = Annotated[str, typer.Option("--min", help="Smallest input NxCxHxW of the profile.")]
OptShape = Annotated[str, typer.Option("--opt", help="Input NxCxHxW TensorRT tunes for.")]
MaxShape = Annotated[str, typer.Option("--max", help="Largest input NxCxHxW of the profile.")]


def _calibration_hw(resolution: str, deprecated_hxw: str | None) -> tuple[int, int]:
    """(height, width) from --calibration-resolution WxH, or from the old --calibration-size HxW with a warning."""
    if deprecated_hxw is not None:
        typer.echo("warning: --calibration-size HxW is deprecated; use --calibration-resolution WIDTHxHEIGHT", err=True)
        height, width = parse_size(deprecated_hxw, "--calibration-size")
        return height, width
    size = parse_size(resolution, "--calibration-resolution")
    return size.height, size.width


@expand_options
def export(
    checkpoint: Annotated[Path, typer.Argument(help="Trained checkpoint (.safetensors).")],
    *,
    out: Annotated[Path | None, typer.Option(help="Output folder (default: artifacts/<checkpoint name>).")] = None,
    precision: Annotated[str, typer.Option(help="Comma-separated precisions to export.")] = "fp32",
    parity_images: Annotated[Path, typer.Option(help="Real photos for the parity check.")] = Path("benchmarks/photos"),
    force: Annotated[bool, typer.Option(help="Re-export even if the ONNX is current.")] = False,
    int8: Int8Settings,
    calibration_resolution: Annotated[str, typer.Option(
        help="int8: deployment size WIDTHxHEIGHT the scales are set for.")] = "{1}x{0}".format(*Int8Settings().size),
    calibration_size: Annotated[str | None, typer.Option(hidden=True, help="Deprecated (HxW).")] = None,
    triton: Annotated[Path | None, typer.Option(help="Also write a Triton model repository here.")] = None,
    allow_below_floor: Annotated[str, typer.Option(
        help="Comma-separated precisions kept (marked below_target in report.json) when they miss their floor.")] = "",
) -> None:
    """Export a checkpoint to ONNX and prove parity with PyTorch on real photos (report.json)."""
    need_torch("export")
    from stylecast.export.pipeline import ExportRequest, phases, run_export
    from stylecast.runtime.artifacts import safetensors_metadata

    style = safetensors_metadata(checkpoint).get("style", checkpoint.stem) if checkpoint.is_file() else "model"
    out_dir = out or Path("artifacts") / checkpoint.stem
    request = ExportRequest(checkpoint=checkpoint, out_dir=out_dir,
                            precisions=[p.strip() for p in precision.split(",") if p.strip()],
                            parity_images=parity_images, force=force,
                            int8=replace(int8, size=_calibration_hw(calibration_resolution, calibration_size)),
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
    min_shape: MinShape = ENGINE_PROFILE["min"],
    opt_shape: OptShape = ENGINE_PROFILE["opt"],
    max_shape: MaxShape = ENGINE_PROFILE["max"],
    workspace_mib: Annotated[int, typer.Option(help="Builder workspace limit in MiB.")] = 1024,
    timing_cache: Annotated[Path | None, typer.Option(help="Timing cache file, reused across builds.")] = None,
    verbose: Annotated[bool, typer.Option(help="TensorRT's verbose build log.")] = False,
) -> None:
    """Build NAME.<precision>.<gpu>.<trt>.engine (+ .json sidecar) for this GPU from an exported ONNX."""
    from stylecast.export import tensorrt_build
    from stylecast.runtime.artifacts import read_metadata, require
    from stylecast.runtime.cache import cache_dir
    from stylecast.runtime.images import writable_folder

    profile = Profile.parse(min_shape, opt_shape, max_shape)
    meta = read_metadata(model)
    require(meta, "onnx", model)
    out_dir = writable_folder(out or model.parent, "--out")
    writable_folder(timing_cache.parent if timing_cache else cache_dir() / "tensorrt", "--timing-cache")
    trt = tensorrt_build.import_tensorrt()
    _refuse_nonconforming(model, trt.__version__, profile)
    from stylecast.runtime.backends.cuda_device import open_device

    device = open_device()
    name, capability = device.describe()
    device.close()
    target = tensorrt_build.Target(trt.__version__, name, capability)
    cache = timing_cache or cache_dir() / "tensorrt" / f"timing.{tensorrt_build.slug(name)}.trt{trt.__version__}.cache"
    dest = tensorrt_build.build_engine(model, meta, out_dir, profile, workspace_mib, cache, target, verbose)
    typer.echo(f"{dest}: {meta['precision']} engine for {name} (sm {capability}), TensorRT {trt.__version__}; "
               f"profile {profile.as_text()}")


def _refuse_nonconforming(model: Path, trt_version: str, profile: Profile) -> None:
    """One line per parser constraint ``model`` breaks for ``trt_version``, then a non-zero exit."""
    from stylecast.export.trt_conformance import check_file, release_for

    release = release_for(trt_version)
    violations = check_file(model, release, profile)
    if violations:
        for violation in violations:
            typer.echo(f"{model}: {violation.line()}", err=True)
        raise StylecastError(f"{model}: {len(violations)} TensorRT {release.name} parser constraint(s) broken "
                             "(listed above); re-export it with `stylecast export`")


def check_trt(
    models: Annotated[list[Path], typer.Argument(help="Exported ONNX model(s).")],
    trt: Annotated[str, typer.Option("--trt", help="TensorRT release: 10.3 (JetPack 6), 10.x (servers) or 11.")]
    = "10.3",
    min_shape: MinShape = ENGINE_PROFILE["min"],
    opt_shape: OptShape = ENGINE_PROFILE["opt"],
    max_shape: MaxShape = ENGINE_PROFILE["max"],
) -> None:
    """Check ONNX model(s) against TensorRT's documented ONNX-parser constraints, on CPU.

    Checks: every op in onnx-tensorrt's operator table for the release and its input types; the opset range;
    Q/DQ in INT8 with zero point 0, weights per-channel on the output-channel axis, activations per tensor; no
    mixed floating input types without a Cast (strong typing); named dynamic dims; a profile that fits portrait
    and landscape photos. It cannot prove what only a GPU shows: the kernels TensorRT picks, their numerics, or
    the engine's speed (`stylecast build-engine` and `make gpu-check` do). Exit 1 with one line per violation.
    """
    from stylecast.export.trt_conformance import check_file, release_for

    profile = Profile.parse(min_shape, opt_shape, max_shape)
    release = release_for(trt)
    broken = 0
    for model in models:
        if not model.is_file():
            raise StylecastError(f"{model}: no such file; give an ONNX written by `stylecast export`")
        violations = check_file(model, release, profile)
        for violation in violations:
            typer.echo(f"{model}: {violation.line()}")
        if not violations:
            typer.echo(f"{model}: conforms to TensorRT {release.name}'s ONNX parser ({release.table})")
        broken += bool(violations)
    if broken:
        raise typer.Exit(1)
