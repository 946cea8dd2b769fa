"""The Johnson et al. (2016) transform net, with width, depth, kernels, depthwise-separable residual
convs and explicit per-layer channel counts as knobs for distilled and pruned student models.

Input and output are plain RGB in [0, 255]: the normalisation lives inside the net, so an
exported graph needs no pre-processing beyond HWC->NCHW, and the output is clamped there too.

A net of N > 1 styles (Dumoulin et al., ICLR 2017, "conditional instance normalisation") shares every conv and
keeps one row of InstanceNorm scale and shift per style; its forward takes a [B, N] style vector of weights, and
the norms apply ``style @ scale`` and ``style @ shift``: a one-hot row is one style, convex weights a blend.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from stylecast.runtime.styles_catalog import style_weights

HEADS = ("conv", "shuffle")


@dataclass(frozen=True)
class ArchConfig:
    """Architecture of a TransformerNet; stored in every checkpoint and exported graph."""

    width: int = 32  # channels after the first conv; Johnson uses 32 -> 64 -> 128
    res_blocks: int = 5
    first_kernel: int = 9
    last_kernel: int = 9
    depthwise: bool = False  # residual convs as depthwise 3x3 + pointwise 1x1 (MobileNet-style)
    # "conv": upsample twice, then the last conv at full resolution (Johnson). "shuffle": the last decoder conv
    # and the output conv (3x4 channels) stay at half resolution and PixelShuffle(2) makes the full-size image,
    # so no conv runs at full resolution after the first (a 3-channel full-res conv cannot fill SIMD lanes).
    head: str = "conv"
    # Explicit channels of a pruned net, overriding width: see layer_channels() for the order.
    channels: tuple[int, ...] = ()
    # Reflect-pad the input by this many pixels and crop the output back (Johnson et al. padded 40 px): the
    # net never sees an image edge where it paints, which removes the motifs along the border.
    # Inside the net, so every export and runtime applies it; costs compute on the padded area.
    input_pad: int = 0
    # Styles the net holds (rows of its conditional InstanceNorms); 1 is the plain single-style net.
    styles: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))
        if self.head not in HEADS:
            raise ValueError(f"head {self.head!r}: choose one of {', '.join(HEADS)}")
        if self.channels and len(self.channels) != 5 + self.res_blocks:
            raise ValueError(f"channels needs 5 + res_blocks = {5 + self.res_blocks} entries, got {len(self.channels)}")
        if self.input_pad < 0:
            raise ValueError(f"input_pad {self.input_pad}: must be 0 or more pixels")
        if self.styles < 1:
            raise ValueError(f"styles {self.styles}: a net holds at least 1 style")
        if self.channels:  # width then just names the first layer, so equal nets compare equal
            object.__setattr__(self, "width", self.channels[0])

    def layer_channels(self) -> tuple[int, ...]:
        """(enc1, enc2, trunk, inner of each residual block..., dec1, dec2): every width the net has."""
        if self.channels:
            return self.channels
        w = self.width
        return (w, 2 * w, 4 * w, *[4 * w] * self.res_blocks, 2 * w, w)

    def to_json(self) -> str:
        """New fields are written only when set, so older checkpoints' arch strings stay byte-identical."""
        data = asdict(self)
        for name in ("depthwise", "channels", "input_pad"):
            if not data[name]:
                del data[name]
        if data["styles"] == 1:
            del data["styles"]
        if data["head"] == "conv":
            del data["head"]
        if "channels" in data:
            data["channels"] = list(data["channels"])
        return json.dumps(data, sort_keys=True)

    def to_spec(self) -> str:
        """The --arch form (what `from_spec` and `stylecast distill --arch` read back into an equal config)."""
        parts = [f"res_blocks={self.res_blocks}", f"first_kernel={self.first_kernel}", f"last_kernel={self.last_kernel}"]
        if self.depthwise:
            parts.append("depthwise=1")
        if self.head != "conv":
            parts.append(f"head={self.head}")
        if self.input_pad:
            parts.append(f"input_pad={self.input_pad}")
        if self.styles != 1:
            parts.append(f"styles={self.styles}")
        parts.append("channels=" + "/".join(map(str, self.channels)) if self.channels else f"width={self.width}")
        return ",".join(parts)

    @classmethod
    def from_json(cls, text: str) -> ArchConfig:
        return cls.from_dict(json.loads(text))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ArchConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown architecture fields {sorted(unknown)}; known: {sorted(known)}")
        return cls(**data)

    @classmethod
    def from_spec(cls, spec: str) -> ArchConfig:
        """``width=16,last_kernel=3,depthwise=1`` (the CLI form); channels as ``channels=8/16/32/...``."""
        data: dict[str, Any] = {}
        for item in filter(None, (part.strip() for part in spec.split(","))):
            key, sep, value = item.partition("=")
            if not sep:
                raise ValueError(f"{item!r} is not key=value")
            key = key.strip().replace("-", "_")
            if key == "depthwise":
                data[key] = value.strip().lower() in ("1", "true", "yes")
            elif key == "head":
                data[key] = value.strip()
            elif key == "channels":
                data[key] = tuple(int(v) for v in value.split("/"))
            else:
                data[key] = int(value)
        return cls.from_dict(data)


class ConvLayer(nn.Sequential):
    """Reflection-padded conv: avoids the border artefacts of zero padding."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1) -> None:
        super().__init__(nn.ReflectionPad2d(kernel // 2), nn.Conv2d(cin, cout, kernel, stride))


class SeparableConvLayer(nn.Sequential):
    """Depthwise k x k then pointwise 1x1: about k*k times fewer multiply-adds than a full conv."""

    def __init__(self, cin: int, cout: int, kernel: int) -> None:
        super().__init__(nn.ReflectionPad2d(kernel // 2), nn.Conv2d(cin, cin, kernel, groups=cin),
                         nn.Conv2d(cin, cout, 1))


class ConditionalInstanceNorm(nn.Module):
    """InstanceNorm with one affine row per style: the [B, N] style weights pick (one-hot) or blend the rows."""

    def __init__(self, channels: int, styles: int) -> None:
        super().__init__()
        self.norm = nn.InstanceNorm2d(channels, affine=False)  # exports as InstanceNormalization, unit scale
        self.scale = nn.Parameter(torch.ones(styles, channels))
        self.shift = nn.Parameter(torch.zeros(styles, channels))

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        # The rows are mixed in fp32 outside autocast: a bf16 autocast matmul here, compiled, gave non-finite
        # gradients to the first conv (measured, torch 2.13 on CPU); in eager mode and in exports nothing changes.
        with torch.autocast(x.device.type, enabled=False):
            style = style.to(self.scale.dtype)
            gamma = (style @ self.scale)[:, :, None, None]
            beta = (style @ self.shift)[:, :, None, None]
        return self.norm(x) * gamma + beta


def instance_norm(channels: int, styles: int) -> nn.Module:
    """Johnson's affine InstanceNorm for one style (the module every single-style checkpoint holds), else a
    conditional one."""
    return nn.InstanceNorm2d(channels, affine=True) if styles == 1 else ConditionalInstanceNorm(channels, styles)


class Styled(nn.Sequential):
    """A Sequential that hands the style vector on to the layers that take one (conditional norms and the blocks
    holding them); a single-style net passes None, which no layer of it reads."""

    def forward(self, x: torch.Tensor, style: torch.Tensor | None = None) -> torch.Tensor:
        for layer in self:
            x = layer(x, style) if isinstance(layer, (Styled, ResidualBlock, ConditionalInstanceNorm)) else layer(x)
        return x


class ConvNormReLU(Styled):
    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, separable: bool = False,
                 styles: int = 1) -> None:
        conv = SeparableConvLayer(cin, cout, kernel) if separable else ConvLayer(cin, cout, kernel, stride)
        super().__init__(conv, instance_norm(cout, styles), nn.ReLU())


class ResidualBlock(nn.Module):
    """x + body(x): ``inner`` channels live only inside the block, so pruning may cut them freely."""

    def __init__(self, channels: int, inner: int | None = None, separable: bool = False, styles: int = 1) -> None:
        super().__init__()
        inner = inner or channels
        self.body = Styled(
            ConvNormReLU(channels, inner, 3, separable=separable, styles=styles),
            SeparableConvLayer(inner, channels, 3) if separable else ConvLayer(inner, channels, 3),
            instance_norm(channels, styles),
        )

    def forward(self, x: torch.Tensor, style: torch.Tensor | None = None) -> torch.Tensor:
        return x + self.body(x, style)


class UpsampleConv(Styled):
    """Nearest upsample then conv: no checkerboard artefacts, unlike transposed conv."""

    def __init__(self, cin: int, cout: int, kernel: int, styles: int = 1) -> None:
        super().__init__(
            nn.Upsample(scale_factor=2, mode="nearest"),
            ConvLayer(cin, cout, kernel),
            instance_norm(cout, styles),
            nn.ReLU(),
        )


class TransformerNet(nn.Module):
    """RGB [0,255] -> stylized RGB [0,255]; any H and W (odd sizes are cropped back)."""

    def __init__(self, config: ArchConfig | None = None) -> None:
        super().__init__()
        self.config = config or ArchConfig()
        cfg = self.config
        n = cfg.styles
        e1, e2, trunk, *inner, d1, d2 = cfg.layer_channels()
        self.encoder = Styled(
            ConvNormReLU(3, e1, cfg.first_kernel, styles=n),
            ConvNormReLU(e1, e2, 3, stride=2, styles=n),
            ConvNormReLU(e2, trunk, 3, stride=2, styles=n),
        )
        self.residuals = Styled(*[ResidualBlock(trunk, c, cfg.depthwise, n) for c in inner])
        if cfg.head == "shuffle":
            self.decoder = Styled(
                UpsampleConv(trunk, d1, 3, n),
                ConvNormReLU(d1, d2, 3, styles=n),
                ConvLayer(d2, 3 * 4, cfg.last_kernel),
                nn.PixelShuffle(2),
            )
        else:
            self.decoder = Styled(
                UpsampleConv(trunk, d1, 3, n),
                UpsampleConv(d1, d2, 3, n),
                ConvLayer(d2, 3, cfg.last_kernel),
            )

    def forward(self, x: torch.Tensor, style: torch.Tensor | None = None) -> torch.Tensor:
        """``style``: [B, N] (or [1, N] for the whole batch) float weights of the N styles, required when N > 1;
        a single-style net ignores it."""
        n = self.config.styles
        if n == 1:
            style = None
        elif style is None or style.dim() != 2 or style.shape[-1] != n:
            got = "none" if style is None else f"shape {tuple(style.shape)}"
            raise ValueError(f"this net holds {n} styles: pass style, a [batch, {n}] tensor of weights (got {got})")
        height, width = x.shape[-2], x.shape[-1]
        pad = self.config.input_pad
        if pad:
            x = F.pad(x, (pad, pad, pad, pad), mode="reflect")  # reflect needs pad < H and W
        y = self.decoder(self.residuals(self.encoder(x / 255.0, style), style), style)
        # Strided convs round odd sizes; crop back (and the padding off) so output matches input exactly.
        y = y[..., pad:pad + height, pad:pad + width]
        return torch.clamp(y, 0.0, 255.0) if not self.training else y


def style_vector(names: list[str], choice: dict[str, float]) -> torch.Tensor:
    """The [1, N] style input of a net whose styles are ``names`` (row order) for ``choice``, e.g. {"wave": 1}
    or a blend (:func:`stylecast.runtime.styles_catalog.parse_style_choice` reads one from text)."""
    return torch.from_numpy(style_weights(names, choice)).unsqueeze(0)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
