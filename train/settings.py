"""Every `stylecast train` setting, declared once: its default, type and help. The command line's options, the
per-style presets (``styles/<style>.toml``, see presets.py) and the Trainer's config (trainer.TrainConfig, a
subclass) are all made from :class:`TrainSettings`. Imported without torch: `stylecast train --help` lists these."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from stylecast.runtime.errors import StylecastError
from stylecast.runtime.params import cli_fields, option


class Span(list):
    """Two whole numbers, the lower first: ``[256, 512]`` in a preset, ``256,512`` on the command line."""


def parse_scale(text: str) -> Span:
    """``256,512`` -> [256, 512]: the short-side range of the random rescale."""
    parts = text.split(",")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts) or int(parts[0]) > int(parts[1]):
        raise StylecastError(f"--scale {text}: expected MIN,MAX pixels, e.g. 256,512")
    return Span(int(p) for p in parts)


def absolute_path(text: str) -> str:
    """A path given on the command line is the user's, relative to where they are, not to the styles folder."""
    return str(Path(text).resolve())


@dataclass(kw_only=True)
class TrainSettings:
    """How a style is trained. A preset may set any field; the command line any but ``image``."""

    steps: int = option(4000, "Total optimiser steps.")
    batch: int = option(4, "Images per step (per process under torchrun).")
    crop: int = option(256, "Square training crop size.")
    scale: Span = option(Span([256, 384]), "MIN,MAX: photos are rescaled to a random short side in this range "
                         "before cropping.", parser=parse_scale, metavar="<str>")
    style_size: int = option(512, "Long side of the style image for its Gram targets.")
    lr: float = option(1e-3, "Adam learning rate (1e-3).")
    lr_schedule: str = option("constant", "constant, or cosine (to 1% at --lr-horizon).")
    lr_horizon: int = option(0, "Steps of the cosine schedule (0: --steps); the planned total when a run is trained "
                             "in pieces.")
    seed: int = option(0, "Seed for weights, batches and crops.")
    content_weight: float = option(1e5)
    style_weight: float = option(1e10)
    tv_weight: float = option(1e3)
    content_layer: str = option("relu2_2", "relu2_2 (Johnson) or relu3_3.")
    edge_margin: int = option(0, "Pixels at each edge left out of the content and style losses (against border "
                              "motifs).")
    stability_weight: float = option(0.0, "Noise-stability term (Gupta et al. 2017; 0: off): output(photo + noise) "
                                     "should match output(photo).")
    stability_sigma: float = option(4.0, "Its noise, grey levels (std).")
    stability_noise: str = option("white", "white (per pixel, a sensor's), blocks (scattered 4x4 blocks) or codec "
                                  "(H.264's own frame changes).")
    stability_loss: str = option("mse", "mse (Gupta et al.) or l1 (what the flicker ratio measures).")
    width: int = option(32, "Channels of the first conv (32 = Johnson).")
    res_blocks: int = option(5, "Residual blocks (5 = Johnson).")
    input_pad: int = option(0, "Reflect-pad the input by N px inside the net and crop the output (in every export; "
                            "against border motifs).")
    device: str = option("auto", "auto, cpu, cuda or cuda:N.")
    precision: str = option("auto", "auto (bf16/fp16 autocast only where a probe measures it faster than fp32 on "
                            "this machine), fp32, bf16 or fp16.")
    channels_last: bool = option(False, "NHWC memory format.", "--channels-last/--no-channels-last")
    compile: bool = option(False, "torch.compile net and loss.", "--compile/--no-compile")
    checkpoint_every: int = option(200, "Save resumable state every N steps.")
    log_every: int = option(10, "Log losses every N steps.")
    snapshot_every: int = option(0, "Keep the model every N steps in <run-dir>/snapshots, for `stylecast "
                                 "quality-curve`; 0: off.")
    model_weights: str = option("fp16", "How the model file stores its weights: fp16 (half the size; outputs move "
                                "by at most 1 grey level) or fp32.")
    workers: int = option(0, "Data-loading worker processes.")
    cpu_budget_s: float = option(0.0, "Stop and write the model once the run has used this much process CPU time "
                                 "(over all sittings); 0: off.")
    # Photos never trained on, by content hash: a file in the styles folder (a path given on the command line is
    # taken as given); "" trains on every photo. The default list is skipped where it does not exist.
    exclude: str = option("heldout.sha256", "sha256 list of photos never to train on (default: "
                          "<styles-dir>/heldout.sha256 where it exists).", parser=absolute_path, metavar="<path>")
    loss_net: str = option("vgg16", "Loss network: vgg16 (Johnson) or vgg19.")
    # Preset only: the command line names the painting by path (--style-image).
    image: str = option("", "The painting's file in the styles folder (\"\": <style>.jpg).", cli=False)

    def loss_weights(self):  # noqa: ANN201 - LossWeights (imported with torch)
        """The training loss these settings name."""
        from stylecast.train.losses import LossWeights

        return LossWeights(content=self.content_weight, style=self.style_weight, tv=self.tv_weight,
                           content_layer=self.content_layer, edge_margin=self.edge_margin)

    def arch_config(self):  # noqa: ANN201 - ArchConfig (imported with torch)
        """The net these settings name."""
        from stylecast.train.model import ArchConfig

        return ArchConfig(width=self.width, res_blocks=self.res_blocks, input_pad=self.input_pad)


FIELDS = {f.name: f for f in dataclasses.fields(TrainSettings)}  # every key a preset may set
OPTIONS = [f.name for f in cli_fields(TrainSettings)]  # the ones the command line (and a [cuda] table) may set
