"""VGG feature extractors for the perceptual losses, loaded from converted ImageNet weights."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from stylecast.runtime.errors import StylecastError
from stylecast.train.weights import CAFFE_BGR, RGB_IMAGENET, input_convention, locate

# Channels of each conv, "M" = 2x2 max pool. Layer names follow the paper: relu{block}_{conv}.
CONFIGS = {
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
              512, 512, 512, 512],
}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# How each weights release wants its pixels, from RGB in [0, 255]: (channel order, mean, std), both
# in RGB order and on the 0..255 scale. The weights file names its convention (``input`` metadata).
INPUT_CONVENTIONS = {
    RGB_IMAGENET: ("rgb", tuple(m * 255.0 for m in IMAGENET_MEAN), tuple(s * 255.0 for s in IMAGENET_STD)),
    CAFFE_BGR: ("bgr", (123.68, 116.779, 103.939), (1.0, 1.0, 1.0)),
}


def layer_names(name: str) -> list[str]:
    """relu names in order of the convs, e.g. relu1_1, relu1_2, relu2_1, ..."""
    names, block, conv = [], 1, 0
    for item in CONFIGS[name]:
        if item == "M":
            block, conv = block + 1, 0
        else:
            conv += 1
            names.append(f"relu{block}_{conv}")
    return names


class VGGFeatures(nn.Module):
    """Frozen VGG that returns the activations at ``layers`` for RGB input in [0, 255].

    The pixel convention (channel order, mean, std) follows the weights file's ``input`` metadata,
    so torchvision-style (lpips VGG16) and Caffe-style (Oxford VGG19) releases both see what they
    were trained on.
    """

    def __init__(self, name: str, layers: list[str], weights: Path | None) -> None:
        super().__init__()
        self.name, self.layers = name, list(layers)
        all_names = layer_names(name)
        unknown = [layer for layer in layers if layer not in all_names]
        if unknown:
            raise StylecastError(f"{name} has no layer(s) {unknown}; choose from {all_names}")
        last = max(all_names.index(layer) for layer in layers)
        modules, conv_i, cin = [], 0, 3
        self.tap_index: dict[int, str] = {}
        for item in CONFIGS[name]:
            if conv_i > last:
                break
            if item == "M":
                modules.append(nn.MaxPool2d(2, 2))
                continue
            modules += [nn.Conv2d(cin, item, 3, padding=1), nn.ReLU()]
            if all_names[conv_i] in layers:
                self.tap_index[len(modules) - 1] = all_names[conv_i]
            cin, conv_i = item, conv_i + 1
        self.body = nn.Sequential(*modules)
        self.input = RGB_IMAGENET
        if weights is not None:
            self._load(weights)
            self.input = input_convention(weights)
        if self.input not in INPUT_CONVENTIONS:
            raise StylecastError(f"{weights}: unknown input convention {self.input!r} "
                                 f"(known: {sorted(INPUT_CONVENTIONS)}); re-convert it with `stylecast weights fetch`")
        order, mean, std = INPUT_CONVENTIONS[self.input]
        self.bgr = order == "bgr"
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))
        self.requires_grad_(False).eval()

    def _load(self, path: Path) -> None:
        tensors = load_file(str(path))
        convs = [m for m in self.body if isinstance(m, nn.Conv2d)]
        for i, conv in enumerate(convs):
            try:
                with torch.no_grad():
                    conv.weight.copy_(tensors[f"conv{i}.weight"])
                    conv.bias.copy_(tensors[f"conv{i}.bias"])
            except (KeyError, RuntimeError) as exc:
                raise StylecastError(f"{path}: not {self.name} weights ({exc})") from exc

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """RGB [0, 255] -> what the first conv was trained on."""
        x = (x - self.mean) / self.std
        return x.flip(1) if self.bgr else x

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.preprocess(x)
        out = {}
        for i, module in enumerate(self.body):
            x = module(x)
            if i in self.tap_index:
                out[self.tap_index[i]] = x
        return out


def load_loss_net(name: str, layers: Iterable[str], device: torch.device | str = "cpu",
                  weights: Path | None = None) -> VGGFeatures:
    """The one way every stage gets its loss network: ``name`` (vgg16/vgg19) tapping ``layers``, from
    ``weights`` or the cache (never random weights), on the device the caller chose. ``net_id`` names the
    weights, for the lineage in checkpoints and reports."""
    found = locate(name, weights)
    net = VGGFeatures(name, list(dict.fromkeys(layers)), found.path).to(device)
    net.net_id = found.net_id
    return net


def save_random_loss_net(path: Path, name: str = "vgg16", convs: int = 10, seed: int = 0) -> Path:
    """The first ``convs`` VGG convs (10: through conv4_3) with He-initialised random weights, in the
    converted-weights layout.

    Only for what needs a loss net's shape but not its knowledge: the tests, and the GPU acceptance run's
    training-step timing on a machine the real weights were not carried to. Marked ``source: random``."""
    from safetensors.torch import save_file

    generator = torch.Generator().manual_seed(seed)
    tensors, cin = {}, 3
    for index, width in enumerate([c for c in CONFIGS[name] if c != "M"][:convs]):
        tensors[f"conv{index}.weight"] = torch.randn(width, cin, 3, 3, generator=generator) * (2.0 / (cin * 9)) ** 0.5
        tensors[f"conv{index}.bias"] = torch.zeros(width)
        cin = width
    save_file(tensors, str(path), metadata={"name": name, "source": "random", "source_sha256": "0" * 64})
    return path
