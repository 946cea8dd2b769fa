"""Perceptual losses of Johnson et al.: content, style (Gram matrices) and total variation."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from stylecast.runtime.errors import StylecastError
from stylecast.train.vgg import VGGFeatures


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """Channel co-activation, normalised by C*H*W so the loss does not depend on image size."""
    b, c, h, w = features.shape
    flat = features.reshape(b, c, h * w).float()
    return flat @ flat.transpose(1, 2) / (c * h * w)


def total_variation(image: torch.Tensor) -> torch.Tensor:
    """Mean squared neighbour difference on the [0, 1] scale: discourages high-frequency noise."""
    x = image / 255.0
    return ((x[..., 1:, :] - x[..., :-1, :]) ** 2).mean() + ((x[..., :, 1:] - x[..., :, :-1]) ** 2).mean()


def crop_edges(image: torch.Tensor, margin: int) -> torch.Tensor:
    """``image`` without ``margin`` pixels on each side (itself when 0)."""
    if margin <= 0:
        return image
    if min(image.shape[-2:]) <= 2 * margin:
        raise StylecastError(f"edge margin {margin} px leaves nothing of a {tuple(image.shape[-2:])} crop")
    return image[..., margin:-margin, margin:-margin]


STABILITY_LOSSES = ("mse", "l1")


def noise_stability(clean: torch.Tensor, noisy: torch.Tensor, kind: str = "mse") -> torch.Tensor:
    """Gupta et al. (2017): the outputs for a photo and for the photo plus small noise should agree, so that
    sensor noise between video frames is not amplified into flicker. Mean squared difference on [0, 1] (Gupta's);
    ``l1``, the mean absolute one, is what the flicker ratio measures: it charges a small change spread over many
    pixels as much as the same total in a few."""
    loss = F.l1_loss if kind == "l1" else F.mse_loss
    return loss(noisy.float() / 255.0, clean.float() / 255.0)


@dataclass
class LossWeights:
    content: float = 1e5
    style: float = 1e10
    tv: float = 1e3
    content_layer: str = "relu2_2"
    style_layers: list[str] = field(default_factory=lambda: ["relu1_2", "relu2_2", "relu3_3", "relu4_3"])
    # Per-layer multipliers of the style term (same order as style_layers).
    style_layer_weights: list[float] = field(default_factory=lambda: [1.0, 1.0, 1.0, 1.0])
    # Pixels dropped at each edge before the content and style terms: VGG's zero padding makes its edge
    # features special, and a net trained against them learns to paint motifs along the border.
    edge_margin: int = 0

    def as_dict(self) -> dict:
        """Fields added later appear only when set, so older runs' resume keys stay byte-identical."""
        data = asdict(self)
        if not data["edge_margin"]:
            del data["edge_margin"]
        return data


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
        inner = crop_edges(output, w.edge_margin)
        out_features = self.vgg(inner)
        with torch.no_grad():
            content_target = self.vgg(crop_edges(content, w.edge_margin))[w.content_layer]
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


# Gatys et al.: content at conv4_2 (its ReLU here), style Grams at conv1_1..conv5_1 (their ReLUs).
GATYS_CONTENT_LAYER = "relu4_2"
GATYS_STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")


def style_grams(vgg: VGGFeatures, styles: list[tuple[torch.Tensor, float]],
                style_layers: tuple[str, ...] = GATYS_STYLE_LAYERS) -> dict[str, torch.Tensor]:
    """The weighted mean Gram matrix of the style images at each style layer (several styles blend this way)."""
    total = sum(w for _, w in styles)
    grams: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for image, weight in styles:
            features = vgg(image)
            for layer in style_layers:
                part = gram_matrix(features[layer]) * (weight / total)
                grams[layer] = grams[layer] + part if layer in grams else part
    return grams


class RelativeStyleLoss(nn.Module):
    """Content and style distances of one image to fixed targets, each relative to its target's energy.

    Dividing by the target's mean square makes the terms independent of the loss network's input
    scale (a Caffe VGG19 sees 0..255 pixels, torchvision's VGG16 unit-variance ones), so one set of
    weights works for both, and an evaluation reports numbers that compare across images: content
    is ``|F - P|^2 / |P|^2`` at one layer, style the weighted mean of ``|G - A|^2 / |A|^2`` over the
    style layers. Several styles blend by a weighted mean of their Gram matrices.
    """

    def __init__(self, vgg: VGGFeatures, content: torch.Tensor,
                 styles: list[tuple[torch.Tensor, float]] | dict[str, torch.Tensor],
                 content_layer: str = GATYS_CONTENT_LAYER, style_layers: tuple[str, ...] = GATYS_STYLE_LAYERS,
                 layer_weights: tuple[float, ...] | None = None) -> None:
        """``styles``: (image, weight) pairs, or their `style_grams` computed once for many contents."""
        super().__init__()
        self.vgg, self.content_layer, self.style_layers = vgg, content_layer, tuple(style_layers)
        weights = layer_weights or (1.0,) * len(self.style_layers)
        if len(weights) != len(self.style_layers):
            raise ValueError(f"{len(weights)} layer weights for {len(self.style_layers)} style layers")
        self.layer_weights = [w / sum(weights) for w in weights]
        grams = styles if isinstance(styles, dict) else style_grams(vgg, styles, self.style_layers)
        with torch.no_grad():
            self.register_buffer("content_target", vgg(content)[content_layer].float())
        for layer in self.style_layers:
            self.register_buffer(f"gram_{layer}", grams[layer])

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.vgg(image)
        target = self.content_target
        content = F.mse_loss(features[self.content_layer].float(), target) / target.pow(2).mean().clamp_min(1e-12)
        style = image.new_zeros((), dtype=torch.float32)
        for layer, weight in zip(self.style_layers, self.layer_weights, strict=True):
            goal = getattr(self, f"gram_{layer}")
            style = style + weight * F.mse_loss(gram_matrix(features[layer]), goal) / goal.pow(2).mean().clamp_min(1e-12)
        return {"content": content, "style": style, "tv": total_variation(image.float())}
