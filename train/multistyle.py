"""Multi-style nets (Dumoulin et al., ICLR 2017): one net trained on several styles at once (`stylecast train
--styles`), and a style added to a trained one without changing what it paints for the others (`--add-style`).

A joint run trains every conv and every style's row of the conditional InstanceNorms; its steps take the styles in
turn (step ``k`` trains style ``k mod N``, so a resumed run trains the same style at the same step), each scored
under its own preset's loss and Gram targets. Adding a style trains only a new row: the net is run as the
single-style net of that row, whose affine norms are the only weights the optimizer sees, and the model file is
the base's tensors, copied, with that row appended.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from stylecast.runtime.artifacts import require, sha256_file
from stylecast.runtime.errors import StylecastError
from stylecast.runtime.styles_catalog import check_names
from stylecast.train.checkpoint import (
    MODEL_FORMAT,
    append_style,
    collapse_styles,
    load_model,
    read_metadata,
    style_names,
    widen_to_styles,
)
from stylecast.train.data import load_style_image
from stylecast.train.losses import LossWeights, PerceptualLoss
from stylecast.train.model import ArchConfig, TransformerNet, style_vector
from stylecast.train.presets import loss_weights, painting, resolve, train_config
from stylecast.train.trainer import TrainConfig, Trainer

DEFAULT_NAME = "catalogue"  # the name of a joint run's net when --name is not given
IMAGE_KEYS = ("style_image", "style_image_sha256")  # metadata a multi-style file holds as a list, one per style


@dataclass
class StyleTarget:
    """One style of a joint run: its painting and its own training loss."""

    name: str
    image: Path
    size: int  # long side of the painting for its Gram targets
    loss: LossWeights
    loss_net: str

    def key(self) -> dict[str, Any]:
        return {"loss": self.loss.as_dict(), "style_size": self.size}


@dataclass(kw_only=True)
class JointConfig(TrainConfig):
    """A joint run: ``style`` names the net, ``targets`` are its styles in row order. Every setting other than a
    style's loss and painting is the first style's (its preset's, under the command line)."""

    targets: list[StyleTarget]

    def __post_init__(self) -> None:
        if len(self.targets) < 2:
            raise StylecastError("--styles: name two or more styles (one style trains with --style NAME)")
        check_names(self.names, "--styles")
        nets = sorted({t.loss_net for t in self.targets})
        if len(nets) > 1:
            raise StylecastError(f"--styles: the presets use loss nets {nets}; one loss network serves every style")
        super().__post_init__()
        self.arch = replace(self.arch, styles=len(self.targets))

    @property
    def names(self) -> list[str]:
        return [t.name for t in self.targets]

    def resume_key(self) -> dict[str, str]:
        key = super().resume_key()
        key["styles"] = json.dumps(self.names)
        key["style_losses"] = json.dumps({t.name: t.key() for t in self.targets}, sort_keys=True)
        return key


class JointLoss(nn.Module):
    """Each style's perceptual loss over one shared loss network; a step is scored under the style it trained,
    whose style term is also logged in its own column (``style_<name>``)."""

    def __init__(self, losses: list[PerceptualLoss], names: list[str]) -> None:
        super().__init__()
        self.losses, self.names = nn.ModuleList(losses), names

    def forward(self, output: torch.Tensor, content: torch.Tensor, index: int) -> dict[str, torch.Tensor]:
        terms = self.losses[index](output, content)
        terms[f"style_{self.names[index]}"] = terms["style"]
        return terms


class JointTrainer(Trainer):
    """The Trainer (resume, logs, SIGINT, DDP, precision) over a multi-style net, one style per step."""

    config: JointConfig

    def __init__(self, config: JointConfig) -> None:
        super().__init__(config)
        self.terms = (*self.terms, *(f"style_{name}" for name in config.names))

    def style_index(self, step: int) -> int:
        """The style step ``step`` trains: round-robin, a function of the step alone, so resuming repeats it."""
        return step % len(self.config.targets)

    def _criterion(self, model: TransformerNet) -> nn.Module:
        cfg = self.config
        vgg = self._loss_net([layer for t in cfg.targets for layer in (t.loss.content_layer, *t.loss.style_layers)])
        return JointLoss([PerceptualLoss(vgg, load_style_image(t.image, t.size).to(self.device), t.loss)
                          for t in cfg.targets], cfg.names)

    def _stylize(self, train_model, images: torch.Tensor, step: int) -> torch.Tensor:  # noqa: ANN001
        name = self.config.names[self.style_index(step)]
        return train_model(images, style_vector(self.config.names, {name: 1.0}).to(images.device))

    def _score(self, criterion: nn.Module, output: torch.Tensor, images: torch.Tensor,
               step: int) -> dict[str, torch.Tensor]:
        return criterion(output, images, self.style_index(step))

    def _start_from(self, path: Path, model: TransformerNet) -> int:
        """A multi-style ``--init`` of the same styles carries on like any fine-tune; a single-style one (a
        shipped style) seeds a fresh run: its convs, and its norms in every style's row."""
        loaded = load_model(path)
        if loaded.model.config.styles > 1:
            if loaded.styles != self.config.names:
                raise StylecastError(f"{path}: --init holds the styles {loaded.styles}, not this run's "
                                     f"{self.config.names}")
            return super()._start_from(path, model)
        wide = widen_to_styles(loaded.model, self.config.arch.styles)
        self._check_init_arch(path, wide.config)
        model.load_state_dict(wide.state_dict())
        return 0

    def curve_title(self) -> str:
        return f"{self.config.style} ({', '.join(self.config.names)}): training losses"

    def _meta(self, step: int) -> dict[str, str]:
        meta = super()._meta(step)
        meta["style_image"] = json.dumps([t.image.name for t in self.config.targets])
        meta["style_image_sha256"] = json.dumps([sha256_file(t.image) for t in self.config.targets])
        return meta


@dataclass(kw_only=True)
class AddStyleConfig(TrainConfig):
    """Adds ``new_style`` (its painting ``style_image``, its preset's loss) to the multi-style net ``base``;
    ``style`` names the result. The architecture is the base's, one style wider."""

    base: Path
    new_style: str
    base_styles: list[str] = field(init=False)
    base_sha256: str = field(init=False)

    def __post_init__(self) -> None:
        meta = read_metadata(self.base)
        require(meta, MODEL_FORMAT, self.base)
        arch = ArchConfig.from_json(meta["arch"])
        if arch.styles == 1:
            raise StylecastError(f"{self.base}: a single-style net; --add-style extends a multi-style one (make one "
                                 "with --styles, e.g. with --init of this net)")
        if self.init:
            raise StylecastError("--init: a run that adds a style starts from --base")
        self.base_styles = style_names(meta, arch, self.base)
        check_names([*self.base_styles, self.new_style], f"--add-style {self.new_style}")
        stored = meta.get("weights_dtype", "fp32")
        if self.model_weights != stored:
            raise StylecastError(f"--model-weights {self.model_weights}: {self.base} stores {stored}, and only that "
                                 f"keeps its styles' weights unchanged; pass --model-weights {stored}")
        self.base_sha256 = sha256_file(self.base)  # now: the result may replace the base file when it is written
        self.arch = replace(arch, styles=arch.styles + 1)
        super().__post_init__()

    def resume_key(self) -> dict[str, str]:
        key = super().resume_key()
        key["styles"] = json.dumps([*self.base_styles, self.new_style])
        key["base_sha256"] = self.base_sha256
        return key


def _listed(text: str | None) -> list:
    """A multi-style file's per-style metadata list (empty where it has none)."""
    try:
        value = json.loads(text or "[]")
    except ValueError:
        return []
    return value if isinstance(value, list) else []


class AddStyleTrainer(Trainer):
    """Trains one new style row of a multi-style net; every other weight stays bit-identical."""

    config: AddStyleConfig

    def __init__(self, config: AddStyleConfig) -> None:
        super().__init__(config)
        self.base = load_model(config.base)

    def _student(self) -> TransformerNet:
        """The base net at the mean of its styles' rows, as a single-style net of whose weights only the affine
        norms (the new row) train: the optimizer never sees a conv or another row."""
        n = self.base.model.config.styles
        net = collapse_styles(self.base.model, torch.full((n,), 1.0 / n)).requires_grad_(False)
        for module in net.modules():
            if isinstance(module, nn.InstanceNorm2d):
                module.requires_grad_(True)
        return net

    def _shipped(self, model: TransformerNet) -> TransformerNet:
        return append_style(self.base.model, model)

    def curve_title(self) -> str:
        return f"{self.config.style}: adding {self.config.new_style}"

    def _meta(self, step: int) -> dict[str, str]:
        cfg = self.config
        meta = super()._meta(step)
        for key in IMAGE_KEYS:
            meta[key] = json.dumps([*_listed(self.base.meta.get(key)), meta[key]])
        meta["base"] = f"{cfg.base.name} (sha256 {cfg.base_sha256[:16]})"
        return meta


def joint_config(names: list[str], data: Path, styles_dir: Path, given: dict[str, Any], *, cuda: bool = False,
                 name: str | None = None, out: Path | None = None, run_dir: Path | None = None,
                 loss_net_weights: Path | None = None, init: Path | None = None) -> JointConfig:
    """``--styles``: each style's loss and painting from its own preset, every other setting from the first
    style's preset, all under the command line's options (``given``)."""
    check_names(names, "--styles")
    targets = []
    for style in names:
        settings = resolve(style, styles_dir, given, cuda=cuda)
        image = painting(settings, styles_dir, hint=f"set image in {styles_dir / style}.toml")
        targets.append(StyleTarget(style, image, settings["style_size"], loss_weights(settings), settings["loss_net"]))
    common = resolve(names[0], styles_dir, given, cuda=cuda)
    return train_config(name or DEFAULT_NAME, data, styles_dir, common, style_image=targets[0].image, out=out,
                        run_dir=run_dir, loss_net_weights=loss_net_weights, init=init, config_type=JointConfig,
                        targets=targets)


def add_style_config(new_style: str, base: Path, data: Path, styles_dir: Path, given: dict[str, Any], *,
                     cuda: bool = False, name: str | None = None, style_image: Path | None = None,
                     out: Path | None = None, run_dir: Path | None = None, loss_net_weights: Path | None = None,
                     init: Path | None = None) -> AddStyleConfig:
    """``--add-style``: the new style's preset under the command line; the result is named ``name`` (default:
    the base's name, so by default it replaces models/<name>.safetensors) and stores its weights as the base
    does unless told otherwise."""
    meta = read_metadata(base)
    name = name or meta.get("style", base.stem)
    settings = resolve(new_style, styles_dir, {"model_weights": meta.get("weights_dtype", "fp32"), **given}, cuda=cuda)
    return train_config(name, data, styles_dir, settings, style_image=style_image, out=out,
                        run_dir=run_dir or Path("runs") / f"{name}+{new_style}", loss_net_weights=loss_net_weights,
                        init=init, config_type=AddStyleConfig, base=base, new_style=new_style)
