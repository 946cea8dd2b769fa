"""`stylecast export`: imported by the CLI without importing torch or onnx."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from stylecast.train.cli import need_torch


def export(
    checkpoint: Annotated[Path, typer.Argument(help="Trained checkpoint (.safetensors).")],
    out: Annotated[Path | None, typer.Option(help="Output folder (default: artifacts/<style>).")] = None,
    precision: Annotated[str, typer.Option(help="Comma-separated precisions to export.")] = "fp32",
    parity_images: Annotated[Path, typer.Option(help="Real photos for the parity check.")] = Path("benchmarks/photos"),
    force: Annotated[bool, typer.Option(help="Re-export even if the ONNX is current.")] = False,
) -> None:
    """Export a checkpoint to ONNX and prove parity with PyTorch on real photos (report.json)."""
    need_torch("export")
    from stylecast.runtime.artefacts import safetensors_metadata

    from .pipeline import ExportRequest, run_export

    style = safetensors_metadata(checkpoint).get("style", checkpoint.stem) if checkpoint.is_file() else "model"
    request = ExportRequest(checkpoint=checkpoint, out_dir=out or Path("artifacts") / style,
                            precisions=[p.strip() for p in precision.split(",") if p.strip()],
                            parity_images=parity_images, force=force)
    run_export(request, log=typer.echo)
