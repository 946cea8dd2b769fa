"""`stylecast distill`, `prune` and `compress`: imported by the CLI without importing torch."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from stylecast.runtime.artifacts import safetensors_metadata, sha256_file
from stylecast.runtime.errors import StylecastError
from stylecast.runtime.options import need_torch
from stylecast.train.presets import style_preset


def teacher_style_image(teacher: Path, styles_dir: Path, style_image: Path | None) -> tuple[str, Path]:
    """The teacher's style and painting; the painting must be the very one the teacher learnt."""
    if not teacher.is_file():
        raise StylecastError(f"{teacher}: teacher checkpoint not found; train one with `stylecast train`")
    meta = safetensors_metadata(teacher)
    style = meta.get("style")
    if not style:
        raise StylecastError(f"{teacher}: no style in its metadata; re-create it with `stylecast train`")
    recorded = meta.get("style_image") or style_preset(style, styles_dir).get("image", f"{style}.jpg")
    image = style_image or styles_dir / recorded
    if not image.is_file():
        raise StylecastError(f"{image}: the teacher's style image is missing; pass --style-image PATH")
    expected = meta.get("style_image_sha256")
    if expected and sha256_file(image) != expected:
        raise StylecastError(f"{image}: not the painting {teacher.name} was trained on (sha256 differs); "
                             "pass the original with --style-image")
    return style, image


def parse_arch(spec: str):  # noqa: ANN201 - ArchConfig, imported with torch
    from stylecast.train.model import ArchConfig

    try:
        return ArchConfig.from_spec(spec)
    except (ValueError, TypeError) as exc:
        raise StylecastError(f"--arch {spec!r}: {exc}; e.g. --arch width=16,last_kernel=3,depthwise=1") from exc


def distill(
    teacher: Annotated[Path, typer.Option(help="Trained teacher checkpoint (e.g. models/wave.safetensors).")],
    data: Annotated[Path, typer.Option(help="Folder of training photos.")],
    arch: Annotated[str, typer.Option(help="Student: width=16,res_blocks=5,first_kernel=9,last_kernel=3,depthwise=1 "
                                           "or channels=a/b/c/... (5 + res_blocks numbers).")] = "width=16",
    out: Annotated[Path | None, typer.Option(help="Student (default: models/<style>-student.safetensors).")] = None,
    run_dir: Annotated[Path | None, typer.Option(help="Resume state and logs (default: runs/<style>-student).")] = None,
    init: Annotated[Path | None, typer.Option(help="Start from these weights (a pruned teacher) instead of random.")] = None,
    warm_start: Annotated[bool, typer.Option(help="With --init of another architecture: copy the layers whose name "
                                                   "and shape match, start the rest random.")] = False,
    styles_dir: Annotated[Path, typer.Option(help="Where style images and presets live.")] = Path("styles"),
    style_image: Annotated[Path | None, typer.Option(help="The teacher's painting (checked against its sha256).")] = None,
    steps: Annotated[int, typer.Option(help="Total optimiser steps.")] = 2000,
    batch: Annotated[int, typer.Option(help="Images per step.")] = 4,
    crop: Annotated[int, typer.Option(help="Square training crop size.")] = 128,
    lr: Annotated[float, typer.Option(help="Adam learning rate.")] = 1e-3,
    seed: Annotated[int, typer.Option(help="Seed for weights, batches and crops.")] = 0,
    pixel_weight: Annotated[float | None, typer.Option(help="Weight of the pixel MSE vs the teacher.")] = None,
    content_weight: Annotated[float | None, typer.Option(help="Weight of the VGG feature MSE vs the teacher.")] = None,
    style_weight: Annotated[float | None, typer.Option(help="Weight of the Gram MSE vs the teacher.")] = None,
    feature_weight: Annotated[float, typer.Option(help="Weight of the trunk attention-transfer loss (0 = off).")] = 0.0,
    method: Annotated[str, typer.Option(hidden=True, help="Recorded in the metadata (prune sets 'prune+distill').")] = "",
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    precision: Annotated[str, typer.Option(help="auto (bf16/fp16 autocast only where a probe measures it faster than "
                                                  "fp32 on this machine), fp32, bf16 or fp16.")] = "auto",
    checkpoint_every: Annotated[int, typer.Option(help="Save resumable state every N steps.")] = 100,
    log_every: Annotated[int, typer.Option(help="Log losses every N steps.")] = 10,
    loss_net_weights: Annotated[Path | None, typer.Option(help="Converted VGG16 safetensors (default: the cache).")] = None,
    resume: Annotated[bool, typer.Option(help="Continue the run in --run-dir exactly where it stopped.")] = False,
) -> None:
    """Train a smaller student to reproduce a trained teacher (pixel + perceptual + optional feature losses)."""
    need_torch()
    from stylecast.compress.distill import DistillConfig, DistillTrainer, DistillWeights

    style, image = teacher_style_image(teacher, styles_dir, style_image)
    student = parse_arch(arch)
    weights = DistillWeights(feature=feature_weight)
    for name, value in (("pixel", pixel_weight), ("content", content_weight), ("style", style_weight)):
        if value is not None:
            setattr(weights, name, value)
    config = DistillConfig(
        style=style, style_image=image, data=data,
        out=out or Path("models") / f"{style}-student.safetensors", run_dir=run_dir or Path("runs") / f"{style}-student",
        steps=steps, batch=batch, crop=crop, scale=(max(160, crop), max(320, 2 * crop)), lr=lr, seed=seed,
        checkpoint_every=checkpoint_every, log_every=log_every, device=device, precision=precision, arch=student,
        loss_net_weights=loss_net_weights, teacher=teacher, init=init, warm_start=warm_start,
        method=method or ("warm-start+distill" if warm_start else "prune+distill" if init else "distill"), distill=weights,
    )
    written = DistillTrainer(config).run(resume=resume)
    typer.echo(f"wrote {written} (log and loss curve in {config.run_dir})")


def prune(
    model: Annotated[Path, typer.Option(help="Trained checkpoint to prune (the teacher).")],
    out: Annotated[Path, typer.Option(help="Pruned checkpoint to write (before fine-tuning).")],
    target_flops: Annotated[float | None, typer.Option(help="Keep at most this % of the FLOPs (e.g. 28).")] = None,
    target_latency: Annotated[float | None, typer.Option(help="Prune until ONNX Runtime CPU latency at --size is "
                                                                "at most this many ms.")] = None,
    size: Annotated[int, typer.Option(help="Square image size for FLOPs and latency.")] = 512,
    divisor: Annotated[int, typer.Option(help="Keep channel counts multiples of this (8 for tensor cores).")] = 8,
    step_ratio: Annotated[float, typer.Option(help="Channel fraction removed per pruning round.")] = 0.05,
) -> None:
    """Structured channel pruning (Torch-Pruning): physically smaller convs, residual coupling respected.

    Fine-tune the result with `stylecast distill --init OUT --arch <printed spec> --teacher MODEL`."""
    need_torch()
    if (target_flops is None) == (target_latency is None):
        raise StylecastError("give exactly one of --target-flops PERCENT or --target-latency MS")
    if target_flops is not None and not 0 < target_flops < 100:
        raise StylecastError(f"--target-flops {target_flops}: must be a percentage between 0 and 100")
    if not 0 < step_ratio <= 0.5 or divisor < 1 or size < 16:
        raise StylecastError(f"--step-ratio {step_ratio} / --divisor {divisor} / --size {size}: need 0 < step ratio "
                             "<= 0.5, divisor >= 1 and size >= 16")
    if target_latency is not None and target_latency <= 0:
        raise StylecastError(f"--target-latency {target_latency}: must be a positive number of milliseconds")
    from stylecast.compress.prune import PruneTarget, prune_checkpoint

    target = PruneTarget(flops_percent=target_flops, latency_ms=target_latency, size=size)
    result = prune_checkpoint(model, out, target, divisor=divisor, step_ratio=step_ratio)
    typer.echo(f"wrote {out}: {result.flops_percent:.1f}% of the FLOPs at {size}², arch {result.spec}")


DEFAULT_STUDENTS = ["w16ps3"]  # the deployment candidate that ships as wave-slim (see students.CANDIDATES)


def parse_students(items: list[str]) -> dict[str, str]:
    """``NAME=SPEC`` items, or the bare name of one of the deployment candidates (students.CANDIDATES)."""
    from stylecast.compress.students import CANDIDATES

    students = {}
    for item in items:
        name, sep, spec = item.partition("=")
        if not sep and name in CANDIDATES:
            name, sep, spec = name, "=", CANDIDATES[name]
        if not sep or not name.isidentifier():
            raise StylecastError(f"--student {item!r}: expected NAME=SPEC, e.g. w16=width=16,last_kernel=3")
        parse_arch(spec)
        students[name] = spec
    return students


def parse_compare(items: list[str], taken: set[str]) -> dict[str, Path]:
    """``NAME=PATH`` items naming existing student checkpoints."""
    out: dict[str, Path] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name.isidentifier() or name in taken | {"teacher", "pruned"} | set(out):
            raise StylecastError(f"--compare {item!r}: expected NAME=PATH with a new NAME, "
                                 "e.g. before=models/wave-slim.safetensors")
        if not Path(path).is_file():
            raise StylecastError(f"--compare {item!r}: {path} not found")
        out[name] = Path(path)
    return out


def compress(
    teacher: Annotated[Path, typer.Option(help="Trained teacher checkpoint (e.g. models/wave.safetensors).")],
    data: Annotated[Path, typer.Option(help="Photo folder; --holdout photos of it are kept out of training.")],
    out: Annotated[Path | None, typer.Option(help="Slim checkpoint (default: models/<style>-slim.safetensors).")] = None,
    work: Annotated[Path | None, typer.Option(help="Stage folders and manifests (default: runs/compress/<style>).")] = None,
    report_dir: Annotated[Path | None, typer.Option(help="Report (default: benchmarks/results/compress/<style>).")] = None,
    student: Annotated[list[str] | None, typer.Option(help="NAME=ARCH student, or a deployment candidate's name (w16k3, "
                                                          "w16r3k3, w16ps, w16ps3, dw16k3, dw32r4ps); repeatable.")] = None,
    warm_start: Annotated[str, typer.Option(help="Where the students start: 'pruned' (this run's distilled pruned "
                                                 "student: matching layers copied, the output conv fitted to the "
                                                 "teacher), a checkpoint PATH of the same family, or 'none'.")] = "pruned",
    compare: Annotated[list[str] | None, typer.Option(help="NAME=PATH: a student trained before (e.g. the current "
                                                          "slim model), scored and selectable beside the new ones; "
                                                          "repeatable.")] = None,
    prune_flops: Annotated[float, typer.Option(help="Also prune the teacher to this % of its FLOPs (0 = no).")] = 28.0,
    steps: Annotated[int, typer.Option(help="Distillation steps per student.")] = 2000,
    prune_steps: Annotated[int | None, typer.Option(help="Distillation steps of the pruned student, which starts "
                                                         "from the teacher's weights (default: --steps).")] = None,
    batch: Annotated[int, typer.Option(help="Images per step.")] = 4,
    crop: Annotated[int, typer.Option(help="Square training crop size.")] = 128,
    holdout: Annotated[int, typer.Option(help="Photos held out for the quality figures.")] = 10,
    eval_size: Annotated[int, typer.Option(help="Square size of the quality and latency figures.")] = 512,
    feature_weight: Annotated[float, typer.Option(help="Trunk attention-transfer loss weight (0 = off).")] = 0.0,
    style_weight: Annotated[float, typer.Option(help="Weight of the Gram MSE vs the teacher's output (the distill "
                                                     "command's default is 1e3).")] = 1e4,
    lr_schedule: Annotated[str, typer.Option(help="constant, or cosine (to 1% of the rate at --steps).")] = "cosine",
    calibration_count: Annotated[int, typer.Option(help="int8: how many training photos calibrate each model (4 "
                                                        "more choose its method and fp32 convs).")] = 16,
    styles_dir: Annotated[Path, typer.Option(help="Where style images and presets live.")] = Path("styles"),
    parity_images: Annotated[Path, typer.Option(help="Photos for the export parity check.")] = Path("benchmarks/photos"),
    precision: Annotated[str, typer.Option(help="auto (bf16/fp16 autocast only where a probe measures it faster than "
                                                  "fp32 on this machine), fp32, bf16 or fp16.")] = "auto",
    loss_net_weights: Annotated[Path | None, typer.Option(help="Converted VGG16 safetensors (default: the cache).")] = None,
) -> None:
    """Prune and distil students of a teacher, export and compare them, and write the best as <style>-slim."""
    need_torch("export")
    for flag, value, least in (("--steps", steps, 1), ("--prune-steps", prune_steps, 1), ("--batch", batch, 1),
                               ("--calibration-count", calibration_count, 1),
                               ("--holdout", holdout, 1), ("--crop", crop, 16), ("--eval-size", eval_size, 16)):
        if value is not None and value < least:
            raise StylecastError(f"{flag} {value}: must be at least {least}")  # before minutes of pruning
    if not 0 <= prune_flops < 100:
        raise StylecastError(f"--prune-flops {prune_flops}: a percentage of the teacher's FLOPs below 100 (0 = no pruning)")
    if lr_schedule not in ("constant", "cosine") or style_weight < 0:
        raise StylecastError(f"--lr-schedule {lr_schedule} / --style-weight {style_weight}: give constant or cosine, "
                             "and a weight of 0 or more")
    if warm_start not in ("pruned", "none") and not Path(warm_start).is_file():
        raise StylecastError(f"--warm-start {warm_start}: no such checkpoint; give 'pruned', 'none' or a .safetensors")
    style, image = teacher_style_image(teacher, styles_dir, None)
    students = parse_students(student or DEFAULT_STUDENTS)
    earlier = parse_compare(compare or [], set(students))
    from stylecast.compress.pipeline import CompressPlan, run_compress

    plan = CompressPlan(
        teacher=teacher, data=data, style_image=image, out=out or Path("models") / f"{style}-slim.safetensors",
        work=work or Path("runs") / "compress" / style,
        report_dir=report_dir or Path("benchmarks") / "results" / "compress" / style,
        students=students, compare=earlier, prune_flops=prune_flops or None, steps=steps,
        prune_steps=prune_steps,
        batch=batch, crop=crop, holdout=holdout, eval_size=eval_size, feature_weight=feature_weight,
        warm_start=warm_start, calibration_count=calibration_count, style_weight=style_weight,
        lr_schedule=lr_schedule,
        precision=precision, loss_net_weights=loss_net_weights, parity_images=parity_images,
    )
    console = Console(stderr=True, highlight=False, soft_wrap=True)
    report = run_compress(plan, log=console.print)
    from stylecast.compress.students import deployed_ms

    for name, row in report["models"].items():
        extra = f", meets target: {row['meets_target']}" if "meets_target" in row else ""
        typer.echo(f"{name}: {row['gflops']['512']:.1f} GFLOP@512, fastest deployed engine "
                   f"{deployed_ms(row):.0f} ms at {plan.eval_size}², SSIM {row['ssim']:.3f}{extra}")
    typer.echo(f"wrote {plan.out} ({report['selected']}); report {plan.report_dir / 'report.md'}")
