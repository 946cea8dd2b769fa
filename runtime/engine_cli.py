"""`stylecast build-engine`: torch-free, so it runs on the Jetson that will use the engine."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from . import tensorrt_build
from .artefacts import read_metadata
from .cache import cache_dir
from .metadata import require


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
    profile = tensorrt_build.Profile.parse(min_shape, opt_shape, max_shape)
    meta = read_metadata(model)
    require(meta, "onnx", model)
    trt = tensorrt_build.import_tensorrt()
    from .cuda_device import open_device

    name, capability = open_device().describe()
    target = tensorrt_build.Target(trt.__version__, name, capability)
    cache = timing_cache or cache_dir() / "tensorrt" / f"timing.{tensorrt_build.slug(name)}.trt{trt.__version__}.cache"
    dest = tensorrt_build.build_engine(model, meta, out or model.parent, profile, workspace_mib, cache, target, verbose)
    typer.echo(f"{dest}: {meta['precision']} engine for {name} (sm {capability}), TensorRT {trt.__version__}; "
               f"profile {profile.as_text()}")
