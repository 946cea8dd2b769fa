"""Structured channel pruning of a TransformerNet with Torch-Pruning (Fang et al., DepGraph, CVPR 2023).

Torch-Pruning traces the net and groups every tensor that must lose the same channels: the trunk shared
by all residual blocks through their skip adds is one group, each block's inner channels another, and
an InstanceNorm's affine weights follow their conv. Channels are physically removed (smaller convs, not
masks) and kept at multiples of ``divisor``. The result is rebuilt from its channel counts alone, which
proves that the checkpoint's metadata describes it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from stylecast.runtime.artifacts import sha256_file
from stylecast.runtime.errors import StylecastError, import_optional
from stylecast.train.checkpoint import load_model, save_model
from stylecast.train.model import ArchConfig, TransformerNet


def gflops(model: nn.Module, height: int, width: int) -> float:
    """Forward GFLOPs (2 per multiply-add) of one RGB image, counted by PyTorch's FlopCounterMode."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model.eval()(torch.zeros(1, 3, height, width))
    return counter.get_total_flops() / 1e9


def out_channels(sequential: nn.Sequential) -> int:
    """Output channels of a ConvLayer / SeparableConvLayer (its last module is the conv)."""
    return sequential[-1].out_channels


def pruned_arch(net: TransformerNet) -> ArchConfig:
    """The channel counts a pruned net really has, as an ArchConfig that rebuilds it."""
    enc, dec = net.encoder, net.decoder
    channels = (out_channels(enc[0][0]), out_channels(enc[1][0]), out_channels(enc[2][0]),
                *[out_channels(block.body[0][0]) for block in net.residuals],
                out_channels(dec[0][1]), out_channels(dec[1][1]))
    return replace(net.config, channels=channels)


def output_conv(net: TransformerNet) -> nn.Module:
    """The conv that writes the image (before the pixel shuffle of a "shuffle" head): its channels are fixed."""
    return net.decoder[-2] if net.config.head == "shuffle" else net.decoder[-1]


def prune_until(net: TransformerNet, reached: Callable[[TransformerNet], bool], divisor: int = 8,
                step_ratio: float = 0.05) -> TransformerNet:
    """Remove the least important channels (L2 norm of each coupled group), a round at a time, until
    ``reached``; the output conv's 3 channels and the input are never touched. Returns the rebuilt net."""
    tp = import_optional("torch_pruning", "pruning needs Torch-Pruning: pip install 'stylecast[compress]'")

    rounds = max(1, round(0.95 / step_ratio))
    pruner = tp.pruner.BasePruner(
        net.eval(), torch.rand(1, 3, 64, 64) * 255.0, importance=tp.importance.GroupMagnitudeImportance(p=2),
        pruning_ratio=step_ratio * rounds, iterative_steps=rounds, ignored_layers=[output_conv(net)],
        round_to=divisor,
    )
    for _ in range(rounds):
        pruner.step()
        if reached(net):
            rebuilt = TransformerNet(pruned_arch(net))
            rebuilt.load_state_dict(net.state_dict())
            return rebuilt.eval()
    raise StylecastError(f"pruning {rounds} rounds did not reach the target; ask for less or a smaller --step-ratio")


@dataclass
class PruneTarget:
    flops_percent: float | None = None
    latency_ms: float | None = None
    size: int = 512


@dataclass
class PruneResult:
    arch: ArchConfig
    spec: str
    flops_percent: float


def prune_checkpoint(source: Path, out: Path, target: PruneTarget, divisor: int = 8,
                     step_ratio: float = 0.05) -> PruneResult:
    """Prune a checkpoint to a FLOPs share or an ONNX Runtime latency and save it with its lineage."""
    loaded = load_model(source)
    size = target.size
    base = gflops(loaded.model, size, size)
    if target.latency_ms is not None:
        from stylecast.export.latency import torch_model_latency_ms

        def reached(net: TransformerNet) -> bool:
            return torch_model_latency_ms(net, size) <= target.latency_ms
    else:
        def reached(net: TransformerNet) -> bool:
            return gflops(net, size, size) <= base * target.flops_percent / 100.0

    pruned = prune_until(loaded.model, reached, divisor, step_ratio)
    share = 100.0 * gflops(pruned, size, size) / base
    goal = f"{target.flops_percent}% FLOPs" if target.latency_ms is None else f"{target.latency_ms} ms"
    meta = {k: v for k, v in loaded.meta.items() if k not in ("arch", "versions", "stylecast.format", "precision")}
    meta.update(method="prune", pruned_from=source.name, pruned_from_sha256=sha256_file(source),
                prune_target=f"{goal} at {size}x{size}", prune_divisor=str(divisor),
                flops_percent=f"{share:.2f}")
    save_model(out, pruned, meta)
    return PruneResult(pruned.config, pruned.config.to_spec(), share)
