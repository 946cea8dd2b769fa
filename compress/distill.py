"""Knowledge distillation: a student TransformerNet learns to reproduce a trained teacher's outputs.

The teacher already solved the style problem; the student only has to copy it, which needs far fewer
steps than training from scratch and no hand-tuning of style weights. The loss compares the student's
output with the teacher's on the same photo: pixels, VGG content features, VGG Gram matrices and,
optionally, where in the image the trunks of both nets respond (attention transfer, which works across
different channel counts without a learnt adapter).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from stylecast.compress.warm_start import fit_photos, warm_start
from stylecast.runtime.artifacts import sha256_file
from stylecast.runtime.errors import StylecastError
from stylecast.train.checkpoint import load_model
from stylecast.train.data import list_images
from stylecast.train.losses import gram_matrix
from stylecast.train.model import TransformerNet
from stylecast.train.trainer import TrainConfig, Trainer
from stylecast.train.vgg import VGGFeatures


@dataclass
class DistillWeights:
    """Each term is of order 1 for an untrained width-16 student of the wave teacher (raw values measured
    on one 4x128² batch: pixel 0.29, content 10, style 1.0e-3, attention 4.5e-4)."""

    pixel: float = 5.0  # MSE of [0,1] images
    content: float = 0.1  # MSE of VGG content-layer features (ImageNet-normalised input)
    style: float = 1e3  # sum over style layers of Gram MSE
    feature: float = 0.0  # attention transfer on the residual trunk (0 = off; 1e3 is of order 1)
    content_layer: str = "relu2_2"
    style_layers: list[str] = field(default_factory=lambda: ["relu1_2", "relu2_2", "relu3_3", "relu4_3"])

    def as_dict(self) -> dict:
        return asdict(self)


def attention_map(features: torch.Tensor) -> torch.Tensor:
    """Where a layer responds (Zagoruyko & Komodakis 2017): channel-mean of squares, L2-normalised."""
    energy = features.float().pow(2).mean(dim=1).flatten(1)
    return F.normalize(energy, dim=1)


class DistillLoss(nn.Module):
    """(student output, photo batch) -> loss terms against the frozen teacher's output on that batch."""

    def __init__(self, teacher: TransformerNet, vgg: VGGFeatures, weights: DistillWeights) -> None:
        super().__init__()
        self.teacher, self.vgg, self.weights = teacher.eval().requires_grad_(False), vgg, weights
        self._trunks: dict[str, torch.Tensor] = {}
        if weights.feature:
            self.teacher.residuals.register_forward_hook(self._keep("teacher"))

    def _keep(self, name: str):  # noqa: ANN202 - a forward hook
        def hook(_module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
            self._trunks[name] = output
        return hook

    def watch(self, student: TransformerNet) -> None:
        """Record the student's trunk output on each forward pass, for the feature term."""
        if self.weights.feature:
            student.residuals.register_forward_hook(self._keep("student"))

    def forward(self, output: torch.Tensor, content: torch.Tensor) -> dict[str, torch.Tensor]:
        w = self.weights
        with torch.no_grad():
            target = self.teacher(content)
            target_features = self.vgg(target)
        features = self.vgg(output)
        style = output.new_zeros((), dtype=torch.float32)
        for layer in w.style_layers:
            style = style + F.mse_loss(gram_matrix(features[layer]), gram_matrix(target_features[layer]))
        terms = {
            "pixel": w.pixel * F.mse_loss(output.float() / 255.0, target.float() / 255.0),
            "content": w.content * F.mse_loss(features[w.content_layer].float(),
                                              target_features[w.content_layer].float()),
            "style": w.style * style,
            "feature": output.new_zeros((), dtype=torch.float32),
        }
        if w.feature:
            terms["feature"] = w.feature * F.mse_loss(attention_map(self._trunks["student"]),
                                                      attention_map(self._trunks["teacher"].detach()))
        terms["total"] = terms["pixel"] + terms["content"] + terms["style"] + terms["feature"]
        return terms


@dataclass
class DistillConfig(TrainConfig):
    teacher: Path = Path("models/teacher.safetensors")
    init: Path | None = None  # start from these weights (a pruned teacher) instead of random ones
    # Copy only the tensors of ``init`` whose name and shape match the student's (e.g. a deployment candidate
    # with another head warm-started from the distilled pruned student); the rest start random.
    warm_start: bool = False
    method: str = "distill"
    distill: DistillWeights = field(default_factory=DistillWeights)

    def resume_key(self) -> dict[str, str]:
        key = super().resume_key()
        key["teacher_sha256"] = sha256_file(self.teacher)
        key.setdefault("init_sha256", "")  # the Trainer's key has the init's hash where there is one
        key["warm_start"] = str(self.warm_start)
        key["distill"] = json.dumps(self.distill.as_dict(), sort_keys=True)
        return key


class DistillTrainer(Trainer):
    """The Trainer (resume, logs, SIGINT, bf16) with a student and the teacher as the target."""

    terms = ("pixel", "content", "style", "feature", "total")
    config: DistillConfig

    def _student(self) -> TransformerNet:
        cfg = self.config
        student = TransformerNet(cfg.arch)
        if cfg.init is None:
            return student
        start = load_model(cfg.init)
        if cfg.warm_start:
            copied, fitted = warm_start(student, start.model, load_model(cfg.teacher).model,
                                        fit_photos(list_images(cfg.data)))
            fit = f"; output conv fitted to the teacher, RMS {fitted:.1f} grey levels" if fitted is not None else ""
            print(f"warm start: {copied} of {len(student.state_dict())} tensors from {cfg.init.name}{fit}")
        elif start.model.config != cfg.arch:
            raise StylecastError(f"{cfg.init}: its architecture {start.meta['arch']} is not the student's "
                                 f"{cfg.arch.to_json()}; pass the matching --arch, --warm-start or no --init")
        else:
            student.load_state_dict(start.model.state_dict())
        return student

    def _start_from(self, path: Path, model: TransformerNet) -> int:
        """``init`` is loaded by _student (it may be another architecture); a distillation counts its own steps."""
        return 0

    def _criterion(self, model: TransformerNet) -> nn.Module:
        cfg = self.config
        teacher = load_model(cfg.teacher)
        self.teacher_meta = teacher.meta
        vgg = self._loss_net([cfg.distill.content_layer, *cfg.distill.style_layers])
        criterion = DistillLoss(teacher.model, vgg, cfg.distill)
        criterion.watch(model)
        return criterion

    def curve_title(self) -> str:
        """A student's curve names what it is, so models/<style>-slim.loss.png is not read as the teacher's."""
        cfg = self.config
        return f"{cfg.style} student ({cfg.arch.to_spec()}) distilled from {cfg.teacher.name}"

    def _meta(self, step: int) -> dict[str, str]:
        cfg = self.config
        meta = super()._meta(step)
        meta.update(method=cfg.method, teacher=cfg.teacher.name, teacher_arch=self.teacher_meta["arch"])
        return meta
