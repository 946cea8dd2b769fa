"""The Johnson et al. (2016) transform net, with width and depth as knobs for student models.

Input and output are plain RGB in [0, 255]: the normalisation lives inside the net, so an
exported graph needs no pre-processing beyond HWC->NCHW, and the output is clamped there too.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields

import torch
from torch import nn


@dataclass(frozen=True)
class ArchConfig:
    """Architecture of a TransformerNet; stored in every checkpoint and exported graph."""

    width: int = 32  # channels after the first conv; Johnson uses 32 -> 64 -> 128
    res_blocks: int = 5
    first_kernel: int = 9
    last_kernel: int = 9

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ArchConfig:
        data = json.loads(text)
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown architecture fields {sorted(unknown)}")
        return cls(**data)


class ConvLayer(nn.Sequential):
    """Reflection-padded conv: avoids the border artefacts of zero padding."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1) -> None:
        super().__init__(nn.ReflectionPad2d(kernel // 2), nn.Conv2d(cin, cout, kernel, stride))


class ConvNormReLU(nn.Sequential):
    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1) -> None:
        super().__init__(
            ConvLayer(cin, cout, kernel, stride), nn.InstanceNorm2d(cout, affine=True), nn.ReLU()
        )


class ResidualBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            ConvNormReLU(channels, channels, 3),
            ConvLayer(channels, channels, 3),
            nn.InstanceNorm2d(channels, affine=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class UpsampleConv(nn.Sequential):
    """Nearest upsample then conv: no checkerboard artefacts, unlike transposed conv."""

    def __init__(self, cin: int, cout: int, kernel: int) -> None:
        super().__init__(
            nn.Upsample(scale_factor=2, mode="nearest"),
            ConvLayer(cin, cout, kernel),
            nn.InstanceNorm2d(cout, affine=True),
            nn.ReLU(),
        )


class TransformerNet(nn.Module):
    """RGB [0,255] -> stylized RGB [0,255]; any H and W (odd sizes are cropped back)."""

    def __init__(self, config: ArchConfig | None = None) -> None:
        super().__init__()
        self.config = config or ArchConfig()
        w, k1, k2 = self.config.width, self.config.first_kernel, self.config.last_kernel
        self.encoder = nn.Sequential(
            ConvNormReLU(3, w, k1),
            ConvNormReLU(w, 2 * w, 3, stride=2),
            ConvNormReLU(2 * w, 4 * w, 3, stride=2),
        )
        self.residuals = nn.Sequential(*[ResidualBlock(4 * w) for _ in range(self.config.res_blocks)])
        self.decoder = nn.Sequential(
            UpsampleConv(4 * w, 2 * w, 3),
            UpsampleConv(2 * w, w, 3),
            ConvLayer(w, 3, k2),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2], x.shape[-1]
        y = self.decoder(self.residuals(self.encoder(x / 255.0)))
        # Strided convs round odd sizes; crop back so output matches input exactly.
        y = y[..., :height, :width]
        return torch.clamp(y, 0.0, 255.0) if not self.training else y


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
