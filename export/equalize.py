"""Make conv outputs int8-friendly without changing what the net computes.

Every conv that feeds an InstanceNorm may be rescaled and shifted per output channel at no cost:
InstanceNorm(a*y + b) == InstanceNorm(y) for any a > 0 and b (up to its epsilon). Left alone,
channels with large offsets or ranges set the single per-tensor int8 scale of the conv output and
the quiet channels round to a few levels, which InstanceNorm then amplifies. Rescaling each
channel to zero mean and unit std on real photos gives every channel the same share of the 8 bits.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from stylecast.train.model import TransformerNet


def conv_norm_pairs(model: nn.Module) -> list[tuple[nn.Conv2d, nn.InstanceNorm2d]]:
    """(conv, the InstanceNorm that reads its output), in forward order."""
    pairs, last_conv = [], None
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            last_conv = module
        elif isinstance(module, nn.InstanceNorm2d) and last_conv is not None:
            pairs.append((last_conv, module))
            last_conv = None
    return pairs


@torch.no_grad()
def equalize(model: TransformerNet, batches: list[torch.Tensor]) -> TransformerNet:
    """A copy whose conv->InstanceNorm channels have mean 0 and std 1 (averaged over ``batches``)."""
    model = copy.deepcopy(model).eval()
    pairs = conv_norm_pairs(model)
    sums = {id(conv): [torch.zeros(conv.out_channels, dtype=torch.float64)] * 2 for conv, _ in pairs}
    count = 0

    def record(conv: nn.Conv2d, _inputs: tuple, output: torch.Tensor) -> None:
        flat = output.double().flatten(2)  # N, C, H*W: per-image statistics, as InstanceNorm sees them
        mean, std = sums[id(conv)]
        sums[id(conv)] = [mean + flat.mean(2).sum(0), std + flat.std(2).sum(0)]

    hooks = [conv.register_forward_hook(record) for conv, _ in pairs]
    try:
        for batch in batches:
            model(batch)
            count += batch.shape[0]
    finally:
        for hook in hooks:
            hook.remove()
    for conv, _ in pairs:
        mean, std = (s / count for s in sums[id(conv)])
        scale = torch.where(std > 1e-6, 1.0 / std, torch.ones_like(std)).float()
        conv.weight.mul_(scale[:, None, None, None])
        conv.bias.sub_(mean.float()).mul_(scale)
    return model
