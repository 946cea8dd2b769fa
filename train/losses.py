"""Perceptual losses of Johnson et al.: content, style (Gram matrices) and total variation."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .vgg import VGGFeatures


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """Channel co-activation, normalised by C*H*W so the loss does not depend on image size."""
    b, c, h, w = features.shape
    flat = features.reshape(b, c, h * w).float()
    return flat @ flat.transpose(1, 2) / (c * h * w)


def total_variation(image: torch.Tensor) -> torch.Tensor:
    """Mean squared neighbour difference on the [0, 1] scale: discourages high-frequency noise."""
    x = image / 255.0
    return ((x[..., 1:, :] - x[..., :-1, :]) ** 2).mean() + ((x[..., :, 1:] - x[..., :, :-1]) ** 2).mean()


@dataclass
class LossWeights:
    content: float = 1e5
    style: float = 1e10
    tv: float = 1e3
    content_layer: str = "relu2_2"
    style_layers: list[str] = field(default_factory=lambda: ["relu1_2", "relu2_2", "relu3_3", "relu4_3"])
    # Per-layer multipliers of the style term (same order as style_layers).
    style_layer_weights: list[float] = field(default_factory=lambda: [1.0, 1.0, 1.0, 1.0])

    def as_dict(self) -> dict:
        return asdict(self)


class PerceptualLoss(nn.Module):
    """Compares a stylized batch with its content batch and one style image's Gram targets."""

    def __init__(self, vgg: VGGFeatures, style_image: torch.Tensor, weights: LossWeights) -> None:
        super().__init__()
        self.vgg, self.weights = vgg, weights
        with torch.no_grad():
            targets = vgg(style_image)
        for layer in weights.style_layers:
            self.register_buffer(f"gram_{layer}", gram_matrix(targets[layer]))

    def forward(self, output: torch.Tensor, content: torch.Tensor) -> dict[str, torch.Tensor]:
        w = self.weights
        out_features = self.vgg(output)
        with torch.no_grad():
            content_target = self.vgg(content)[w.content_layer]
        content_loss = F.mse_loss(out_features[w.content_layer].float(), content_target.float())
        style_loss = output.new_zeros((), dtype=torch.float32)
        for layer, mult in zip(w.style_layers, w.style_layer_weights, strict=True):
            gram = gram_matrix(out_features[layer])
            target = getattr(self, f"gram_{layer}").expand_as(gram)
            style_loss = style_loss + mult * F.mse_loss(gram, target)
        terms = {
            "content": w.content * content_loss,
            "style": w.style * style_loss,
            "tv": w.tv * total_variation(output.float()),
        }
        terms["total"] = terms["content"] + terms["style"] + terms["tv"]
        return terms
