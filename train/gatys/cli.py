"""`stylecast optimize`: Gatys et al. optimisation from the CLI; imported without importing torch."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from stylecast.runtime.errors import StylecastError
from stylecast.runtime.options import need_torch


def parse_weighted(spec: str) -> tuple[Path, float]:
    """``painting.jpg`` or ``painting.jpg:0.7``; a colon not followed by a number is part of the path."""
    path, _, weight = spec.rpartition(":")
    if path:
        try:
            value = float(weight)
        except ValueError:
            return Path(spec), 1.0
        if value <= 0:
            raise StylecastError(f"{spec}: style weight must be positive")
        return Path(path), value
    return Path(spec), 1.0


def parse_list(text: str, option: str, kind: type = int) -> list:
    """``256,384,512`` -> [256, 384, 512]; a typo becomes a one-line error naming the option."""
    try:
        return [kind(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise StylecastError(f"{option} {text}: expected comma-separated {kind.__name__} values, e.g. 256,384,512") from exc


def parse_snapshot(spec: str) -> tuple[int, Path]:
    step, _, path = spec.partition(":")
    if not step.isdigit() or not path:
        raise StylecastError(f"--snapshot {spec}: expected STEP:PATH, e.g. 50:out/step50.png")
    return int(step), Path(path)


def optimize(
    content: Annotated[Path, typer.Argument(help="The photo to stylize.")],
    style: Annotated[list[str], typer.Argument(help="Style image(s), each PATH or PATH:WEIGHT to blend several, "
                                                    "e.g. wave.jpg:0.7 starry.jpg:0.3.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output image (.png, .jpg, ...).")],
    scales: Annotated[str, typer.Option(help="Long side at each scale, coarse to fine.")] = "192,320,512",
    steps: Annotated[str, typer.Option(help="Iterations per scale: one number for all, or one per scale.")] = "100,40,20",
    loss_net: Annotated[str, typer.Option(help="vgg19 (Gatys, Oxford weights) or vgg16.")] = "vgg19",
    loss_net_weights: Annotated[Path | None, typer.Option(help="Converted VGG safetensors (default: the cache).")] = None,
    optimizer: Annotated[str, typer.Option(help="lbfgs (Gatys) or adam.")] = "lbfgs",
    lr: Annotated[float | None, typer.Option(help="Adam step in grey levels (default 5).")] = None,
    init: Annotated[str, typer.Option(help="Start from the content, the style or noise.")] = "content",
    content_weight: Annotated[float, typer.Option(help="Weight of the relative content loss.")] = 1.0,
    style_weight: Annotated[float, typer.Option(help="Weight of the relative style loss (higher: more style).")] = 10.0,
    tv_weight: Annotated[float, typer.Option(help="Total-variation weight (smoothness).")] = 1.0,
    content_layer: Annotated[str, typer.Option(help="Content layer (ReLU of conv4_2 by default).")] = "relu4_2",
    style_layers: Annotated[str, typer.Option(help="Style layers.")] = "relu1_1,relu2_1,relu3_1,relu4_1,relu5_1",
    style_layer_weights: Annotated[str | None, typer.Option(help="Per-layer style weights, e.g. 1,1,1,1,1.")] = None,
    style_scale: Annotated[float, typer.Option(help="Style image size relative to the output's.")] = 1.0,
    preserve_color: Annotated[str | None, typer.Option(help="luminance (transfer luma only) or histogram "
                                                            "(recolour the style to the photo's colours).")] = None,
    precision: Annotated[str, typer.Option(help="auto (bf16 autocast where a probe measures it faster than fp32 "
                                                            "on this machine), fp32 or bf16.")] = "auto",
    seed: Annotated[int, typer.Option(help="Seed (noise init); same seed, same machine, same image.")] = 0,
    snapshot: Annotated[list[str] | None, typer.Option(help="Also save the image after STEP iterations: STEP:PATH "
                                                            "(repeatable).")] = None,
    curve: Annotated[Path | None, typer.Option(help="Loss-curve PNG (default: <out stem>.loss.png).")] = None,
    allow_huge: Annotated[bool, typer.Option(help="Lift Pillow's decompression-bomb limit.")] = False,
) -> None:
    """Stylize one photo by optimising its pixels (Gatys et al.), coarse to fine."""
    need_torch()
    from stylecast.runtime.artifacts import sidecar_path
    from stylecast.train.gatys.optimize import GatysConfig
    from stylecast.train.gatys.run import OptimizeJob, run_job

    weighted = [parse_weighted(s) for s in style]
    config = GatysConfig(
        scales=parse_list(scales, "--scales"), steps=parse_list(steps, "--steps"),
        content_weight=content_weight, style_weight=style_weight, tv_weight=tv_weight,
        content_layer=content_layer, style_layers=[s.strip() for s in style_layers.split(",") if s.strip()],
        style_layer_weights=parse_list(style_layer_weights, "--style-layer-weights", float) if style_layer_weights else None,
        optimizer=optimizer, lr=lr, init=init, style_scale=style_scale, preserve_color=preserve_color,
        precision=precision, seed=seed,
    )
    job = OptimizeJob(content=content, styles=weighted, out=out, config=config, loss_net=loss_net,
                      loss_net_weights=loss_net_weights, snapshots=dict(parse_snapshot(s) for s in snapshot or []),
                      curve=curve or out.with_name(f"{out.stem}.loss.png"), allow_huge=allow_huge)
    seconds = run_job(job)
    typer.echo(f"wrote {out} in {seconds:.1f} s (settings and timing in {sidecar_path(out)}, curve {job.curve})")

