"""`stylecast compress`: imported by the CLI without importing torch or onnx."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from stylecast.runtime.errors import StylecastError
from stylecast.train.cli import need_torch
from stylecast.train.compress_cli import parse_arch, teacher_style_image

DEFAULT_STUDENTS = ["w16=width=16", "w16k3=width=16,last_kernel=3"]


def parse_students(items: list[str]) -> dict[str, str]:
    students = {}
    for item in items:
        name, sep, spec = item.partition("=")
        if not sep or not name.isidentifier():
            raise StylecastError(f"--student {item!r}: expected NAME=SPEC, e.g. w16=width=16,last_kernel=3")
        parse_arch(spec)
        students[name] = spec
    return students


def compress(
    teacher: Annotated[Path, typer.Option(help="Trained teacher checkpoint (e.g. models/wave.safetensors).")],
    data: Annotated[Path, typer.Option(help="Photo folder; --holdout photos of it are kept out of training.")],
    out: Annotated[Path | None, typer.Option(help="Slim checkpoint (default: models/<style>-slim.safetensors).")] = None,
    work: Annotated[Path | None, typer.Option(help="Stage folders and manifests (default: runs/compress/<style>).")] = None,
    report_dir: Annotated[Path | None, typer.Option(help="Report (default: benchmarks/results/compress/<style>).")] = None,
    student: Annotated[list[str] | None, typer.Option(help="NAME=ARCH student (repeatable).")] = None,
    prune_flops: Annotated[float, typer.Option(help="Also prune the teacher to this % of its FLOPs (0 = no).")] = 28.0,
    steps: Annotated[int, typer.Option(help="Distillation steps per student.")] = 600,
    prune_steps: Annotated[int | None, typer.Option(help="Distillation steps of the pruned student, which starts "
                                                         "from the teacher's weights (default: --steps).")] = None,
    batch: Annotated[int, typer.Option(help="Images per step.")] = 4,
    crop: Annotated[int, typer.Option(help="Square training crop size.")] = 128,
    holdout: Annotated[int, typer.Option(help="Photos held out for the quality figures.")] = 10,
    eval_size: Annotated[int, typer.Option(help="Square size of the quality and latency figures.")] = 512,
    feature_weight: Annotated[float, typer.Option(help="Trunk attention-transfer loss weight (0 = off).")] = 0.0,
    styles_dir: Annotated[Path, typer.Option(help="Where style images and presets live.")] = Path("styles"),
    parity_images: Annotated[Path, typer.Option(help="Photos for the export parity check.")] = Path("benchmarks/photos"),
    precision: Annotated[str, typer.Option(help="auto (bf16/fp16 autocast only where a probe measures it faster than "
                                                  "fp32 on this machine), fp32, bf16 or fp16.")] = "auto",
    loss_net_weights: Annotated[Path | None, typer.Option(help="Converted VGG16 safetensors (default: the cache).")] = None,
) -> None:
    """Prune and distil students of a teacher, export and compare them, and write the best as <style>-slim."""
    need_torch("export")
    for flag, value, least in (("--steps", steps, 1), ("--prune-steps", prune_steps, 1), ("--batch", batch, 1),
                               ("--holdout", holdout, 1), ("--crop", crop, 16), ("--eval-size", eval_size, 16)):
        if value is not None and value < least:
            raise StylecastError(f"{flag} {value}: must be at least {least}")  # before minutes of pruning
    if not 0 <= prune_flops < 100:
        raise StylecastError(f"--prune-flops {prune_flops}: a percentage of the teacher's FLOPs below 100 (0 = no pruning)")
    style, image = teacher_style_image(teacher, styles_dir, None)
    from .compress import CompressPlan, run_compress

    plan = CompressPlan(
        teacher=teacher, data=data, style_image=image, out=out or Path("models") / f"{style}-slim.safetensors",
        work=work or Path("runs") / "compress" / style,
        report_dir=report_dir or Path("benchmarks") / "results" / "compress" / style,
        students=parse_students(student or DEFAULT_STUDENTS), prune_flops=prune_flops or None, steps=steps,
        prune_steps=prune_steps,
        batch=batch, crop=crop, holdout=holdout, eval_size=eval_size, feature_weight=feature_weight,
        precision=precision, loss_net_weights=loss_net_weights, parity_images=parity_images,
    )
    console = Console(stderr=True, highlight=False, soft_wrap=True)
    report = run_compress(plan, log=console.print)
    for name, row in report["models"].items():
        extra = f", meets target: {row['meets_target']}" if "meets_target" in row else ""
        typer.echo(f"{name}: {row['gflops']['512']:.1f} GFLOP@512, {row['latency_ms']:.0f} ms ({row['speedup']:.2f}x), "
                   f"SSIM {row['ssim']:.3f}{extra}")
    typer.echo(f"wrote {plan.out} ({report['selected']}); report {plan.report_dir / 'report.md'}")
