"""`stylecast evaluate`: compare stylization methods on the same photos; imported without importing torch."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from stylecast.runtime.errors import StylecastError
from stylecast.runtime.options import need_torch


def evaluate(
    contents: Annotated[list[str], typer.Argument(help="Photos, folders or glob patterns (the content images).")],
    style: Annotated[Path, typer.Option(help="The style image every method aimed at.")],
    method: Annotated[list[str], typer.Option(help="NAME=PATH, repeatable: an .onnx model (run and timed here) or a "
                                                   "folder of outputs named <photo stem>[.tag].<ext>.")],
    out: Annotated[Path, typer.Option(help="Folder for report.json, report.md and contact.png.")] = Path("evaluation"),
    size: Annotated[int, typer.Option(help="Long side (px) at which photos are scored; outputs are resized to it.")] = 256,
    loss_net: Annotated[str, typer.Option(help="Loss network for every method: vgg16 or vgg19.")] = "vgg16",
    loss_net_weights: Annotated[Path | None, typer.Option(help="Converted VGG safetensors (default: the cache).")] = None,
    fid_weights: Annotated[Path | None, typer.Option(help="TorchScript Inception-v3 (inception-2015-12-05.pt): "
                                                         "also report FID against --fid-reference.")] = None,
    fid_reference: Annotated[list[str] | None, typer.Option(help="Images FID compares every method's outputs "
                                                                 "with (files, folders or globs).")] = None,
) -> None:
    """Score outputs against their photos and the style: content/style loss, SSIM, PSNR, time per image."""
    need_torch()
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from stylecast.benchmarks.quality.evaluate import Evaluation, Evaluator, parse_method
    from stylecast.runtime.cli import expand_inputs
    from stylecast.train.losses import GATYS_CONTENT_LAYER, GATYS_STYLE_LAYERS
    from stylecast.train.vgg import load_loss_net

    if size < 16:
        raise StylecastError(f"--size {size}: score at a long side of at least 16 px")
    if fid_weights is not None and not fid_reference:
        raise StylecastError("--fid-weights needs --fid-reference IMAGES to compare the outputs with")
    methods = [parse_method(spec) for spec in method]
    vgg = load_loss_net(loss_net, [GATYS_CONTENT_LAYER, *GATYS_STYLE_LAYERS], "cpu", loss_net_weights)
    evaluation = Evaluation(style=style, contents=expand_inputs(contents), methods=methods, out_dir=out,
                            size=size, loss_net=loss_net, net_id=vgg.net_id, fid_weights=fid_weights,
                            fid_reference=expand_inputs(fid_reference) if fid_reference else [])
    evaluator = Evaluator(evaluation, vgg)
    with Progress(TextColumn("[bold]evaluate"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()) as bar:
        task = bar.add_task("evaluate", total=len(evaluation.contents) * len(methods))
        report = evaluator.run(progress=lambda n: bar.advance(task, n))
    for row in report["summary"]:
        seconds = "n/a" if row["seconds_per_image"] is None else f"{row['seconds_per_image']:.3g} s"
        typer.echo(f"{row['method']}: content {row['content_loss']:.3g}, style {row['style_loss']:.3g}, "
                   f"SSIM {row['ssim']:.3f}, PSNR {row['psnr']:.1f} dB, {seconds}/image")
    fid = report["fid"]
    if isinstance(fid, dict):
        typer.echo("FID " + ", ".join(f"{name} {value:.1f}" for name, value in fid["values"].items()))
    else:
        typer.echo(f"FID {fid}")
    typer.echo(f"wrote {out / 'report.json'}, {out / 'report.md'}, {out / 'contact.png'}")
