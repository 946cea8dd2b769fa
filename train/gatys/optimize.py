"""Gatys et al. style transfer by optimisation: the pixels are the parameters, VGG the judge.

Multi-scale (coarse to fine): the image is optimised at a small size, upsampled, and optimised
again at each larger size, so the large-scale structure forms where it is cheap and the last,
expensive scale only refines texture.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from stylecast.runtime.errors import StylecastError
from stylecast.runtime.images import resize_long_side, resize_to
from stylecast.train.gatys.color import grey_luminance, match_colour, match_luminance, with_chroma_of
from stylecast.train.gatys.pixels import KINDS, PixelOptimizer
from stylecast.train.losses import GATYS_CONTENT_LAYER, GATYS_STYLE_LAYERS, RelativeStyleLoss
from stylecast.train.vgg import VGGFeatures

INITS = ("content", "style", "noise")
COLOUR_MODES = ("luminance", "histogram")


@dataclass
class GatysConfig:
    """Everything that decides the result; stored in each output's sidecar."""

    scales: list[int] = field(default_factory=lambda: [192, 320, 512])  # long side at each scale
    steps: list[int] = field(default_factory=lambda: [100, 40, 20])  # iterations at each scale
    content_weight: float = 1.0
    style_weight: float = 10.0
    tv_weight: float = 1.0
    content_layer: str = GATYS_CONTENT_LAYER
    style_layers: list[str] = field(default_factory=lambda: list(GATYS_STYLE_LAYERS))
    style_layer_weights: list[float] | None = None  # default: equal
    optimizer: str = "lbfgs"
    lr: float | None = None  # Adam only; default 5 grey levels per step
    init: str = "content"
    style_scale: float = 1.0  # style image long side = scale * this
    preserve_color: str | None = None
    precision: str = "auto"  # auto (measured) | fp32 | bf16 (autocast: VGG in bf16, Gram matrices and losses in fp32)
    seed: int = 0

    def check(self) -> None:
        if len(self.steps) == 1 and len(self.scales) > 1:
            self.steps = self.steps * len(self.scales)
        problems = []
        if len(self.steps) != len(self.scales):
            problems.append(f"{len(self.steps)} step counts for {len(self.scales)} scales; give one or one per scale")
        if not self.scales or any(s < 16 for s in self.scales) or any(n < 1 for n in self.steps):
            problems.append("scales must be >= 16 pixels and steps >= 1")
        if self.style_layer_weights is not None and len(self.style_layer_weights) != len(self.style_layers):
            problems.append(f"{len(self.style_layer_weights)} style layer weights for {len(self.style_layers)} style layers")
        if self.optimizer not in KINDS:
            problems.append(f"--optimizer {self.optimizer}: choose {' or '.join(KINDS)}")
        if self.init not in INITS:
            problems.append(f"--init {self.init}: choose from {', '.join(INITS)}")
        if self.preserve_color not in (None, *COLOUR_MODES):
            problems.append(f"--preserve-color {self.preserve_color}: choose {' or '.join(COLOUR_MODES)}")
        if self.precision not in ("auto", "fp32", "bf16"):
            problems.append(f"--precision {self.precision}: choose auto, fp32 or bf16")
        if problems:
            raise StylecastError("; ".join(problems))

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class StepReport:
    step: int  # iterations done so far, over all scales
    scale: int
    losses: dict[str, float]
    seconds: float  # optimisation wall time so far, over all scales
    cpu_seconds: float  # CPU time of this process so far: what the run cost on a busy machine
    image: Callable[[], np.ndarray]  # the current result as HxWx3 uint8 (computed on demand)


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1), np.float32)).unsqueeze(0)


def to_rgb(image: torch.Tensor) -> np.ndarray:
    return image.detach()[0].clamp(0, 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()


def _initial(config: GatysConfig, content: torch.Tensor, style: np.ndarray) -> torch.Tensor:
    if config.init == "content":
        return content.clone()
    if config.init == "style":
        h, w = content.shape[-2:]
        return to_tensor(resize_to(style, w, h, Image.Resampling.BICUBIC))
    generator = torch.Generator().manual_seed(config.seed)
    return (torch.randn(content.shape, generator=generator) * 48.0 + 128.0).clamp(0, 255)


class GatysOptimizer:
    """Optimise one photo towards one or more weighted style images (multi-scale, colour-preserving)."""

    def __init__(self, vgg: VGGFeatures, config: GatysConfig) -> None:
        config.check()
        self.vgg, self.config = vgg, config
        self.device = next(vgg.parameters()).device

    def _prepare(self, content: np.ndarray, styles: list[tuple[np.ndarray, float]]) -> list[tuple[np.ndarray, float]]:
        mode = self.config.preserve_color
        if mode == "histogram":
            return [(match_colour(style, content), w) for style, w in styles]
        if mode == "luminance":
            grey = grey_luminance(content)
            return [(match_luminance(grey_luminance(style), grey), w) for style, w in styles]
        return styles

    def run(self, content: np.ndarray, styles: list[tuple[np.ndarray, float]],
            on_step: Callable[[StepReport], None] = lambda _: None) -> np.ndarray:
        """The stylized photo (HxWx3 uint8) at the last scale; ``on_step`` sees every iteration."""
        cfg = self.config
        torch.manual_seed(cfg.seed)
        styles = self._prepare(content, styles)
        source = grey_luminance(content) if cfg.preserve_color == "luminance" else content
        image: torch.Tensor | None = None
        done, elapsed, cpu_start = 0, 0.0, time.process_time()
        for side, steps in zip(cfg.scales, cfg.steps, strict=True):
            tic = time.perf_counter()
            target = to_tensor(resize_long_side(source, side)).to(self.device)
            style_side = max(16, round(side * cfg.style_scale))
            style_targets = [(to_tensor(resize_long_side(s, style_side)).to(self.device), w) for s, w in styles]
            loss = RelativeStyleLoss(self.vgg, target, style_targets,
                                     cfg.content_layer, tuple(cfg.style_layers),
                                     tuple(cfg.style_layer_weights) if cfg.style_layer_weights else None)
            if image is None:
                image = _initial(cfg, target.cpu(), styles[0][0]).to(self.device)
            else:
                image = F.interpolate(image.detach(), size=target.shape[-2:], mode="bicubic", align_corners=False)
            image = image.clamp(0, 255).requires_grad_(True)
            pixels = PixelOptimizer(image, self._weighted(loss), cfg.optimizer, cfg.lr, self._autocast())
            for _ in range(steps):
                terms = pixels.step()
                done += 1
                now = elapsed + time.perf_counter() - tic
                on_step(StepReport(done, side, terms, now, time.process_time() - cpu_start,
                                   self._finisher(image, content)))
            elapsed += time.perf_counter() - tic
        assert image is not None
        return self._finisher(image, content)()

    def _finisher(self, image: torch.Tensor, content: np.ndarray) -> Callable[[], np.ndarray]:
        def finish() -> np.ndarray:
            rgb = to_rgb(image)
            if self.config.preserve_color == "luminance":
                h, w = rgb.shape[:2]
                photo = resize_to(content, w, h)
                rgb = with_chroma_of(rgb, photo)
            return rgb
        return finish

    def _autocast(self) -> AbstractContextManager:
        if self.config.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return nullcontext()

    def _weighted(self, loss: RelativeStyleLoss) -> Callable[[torch.Tensor], dict[str, torch.Tensor]]:
        cfg = self.config

        def weighted(pixels: torch.Tensor) -> dict[str, torch.Tensor]:
            raw = loss(pixels)
            terms = {"content": cfg.content_weight * raw["content"], "style": cfg.style_weight * raw["style"],
                     "tv": cfg.tv_weight * raw["tv"]}
            terms["total"] = terms["content"] + terms["style"] + terms["tv"]
            return terms

        return weighted
