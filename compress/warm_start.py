"""Warm start: a student of another architecture inherits what it can of a trained net of the same family.

A deployment candidate (a cheaper head, fewer blocks) distilled from random weights needs thousands of steps to
relearn what a distilled pruned student already knows. Its output is RGB in [0, 255], so a random output conv
also starts two orders of magnitude off and Adam needs hundreds of steps just to grow it. Here every layer is
carried over that can be: equal tensors are copied, a conv of another kernel size is resampled with its sum kept
(the same response to flat regions), and the pixel-shuffle head is built from the upsampling head it replaces.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from stylecast.runtime.errors import StylecastError
from stylecast.runtime.images import fit, load_image
from stylecast.train.model import TransformerNet

SHUFFLE = 2  # the pixel-shuffle head's upscale factor (model.py): 3 colours x 2 x 2 sub-pixels


def resample_kernel(weight: torch.Tensor, size: int) -> torch.Tensor:
    """A conv kernel at another spatial size, each (out, in) filter's sum unchanged."""
    if weight.shape[-1] == size:
        return weight.clone()
    scale = (weight.shape[-1] / size) ** 2
    return F.interpolate(weight, size=(size, size), mode="area" if size < weight.shape[-1] else "bilinear") * scale


def _shuffle_head(source: dict[str, torch.Tensor], shape: torch.Size) -> dict[str, torch.Tensor]:
    """Conv head -> shuffle head: the full-resolution conv's filters run at half resolution instead, and the
    output conv's filter for each colour is repeated for its four sub-pixels (each sub-pixel starts equal)."""
    colour = resample_kernel(source["decoder.2.1.weight"], shape[-1])
    return {
        "decoder.1.0.1.weight": source["decoder.1.1.1.weight"], "decoder.1.0.1.bias": source["decoder.1.1.1.bias"],
        "decoder.1.1.weight": source["decoder.1.2.weight"], "decoder.1.1.bias": source["decoder.1.2.bias"],
        "decoder.2.1.weight": colour.repeat_interleave(SHUFFLE * SHUFFLE, dim=0),
        "decoder.2.1.bias": source["decoder.2.1.bias"].repeat_interleave(SHUFFLE * SHUFFLE),
    }


def fit_output_conv(student: TransformerNet, source: TransformerNet, photos: torch.Tensor) -> float:
    """Least-squares fit of the student's output conv to the source net's output on ``photos`` (N,3,H,W in
    [0,255]), given the student's own features before it: the best such conv for everything loaded upstream.
    Returns the fit's RMS error in grey levels."""
    head = student.decoder[2][1]
    with torch.no_grad():
        target = source.eval()(photos)
        features = student.eval().decoder[:2](student.residuals(student.encoder(photos / 255.0)))
        if student.config.head == "shuffle":  # each 2x2 output block is 12 channels at half resolution
            target = F.pixel_unshuffle(target, SHUFFLE)
        features = student.decoder[2][0](features)  # the reflection pad
        columns = F.unfold(features, head.kernel_size)  # N, C*k*k, H*W
        rows = torch.cat([columns.transpose(1, 2).reshape(-1, columns.shape[1]),
                          torch.ones(columns.shape[0] * columns.shape[2], 1)], dim=1)
        wanted = target.flatten(2).transpose(1, 2).reshape(-1, target.shape[1])
        solution = torch.linalg.lstsq(rows.double(), wanted.double()).solution.float()
        head.weight.copy_(solution[:-1].T.reshape(head.weight.shape))
        head.bias.copy_(solution[-1])
        return float((rows @ solution - wanted).pow(2).mean().sqrt())


def fit_photos(files: list[Path], count: int = 8, size: int = 192) -> torch.Tensor:
    """The first ``count`` training photos, centre-fitted to size² (N,3,H,W in [0,255]): the output conv's fit set."""
    rgb = [fit(load_image(path).rgb, size, size) for path in files[:count]]
    return torch.from_numpy(np.stack(rgb).transpose(0, 3, 1, 2).astype(np.float32))


def warm_start(student: TransformerNet, source: TransformerNet, teacher: TransformerNet | None = None,
               photos: torch.Tensor | None = None) -> tuple[int, float | None]:
    """Load into ``student`` every tensor of ``source`` that maps onto it. If the output conv could not be
    copied as it is and a teacher and photos are given, fit it to the teacher. Returns (tensors loaded, fit RMS)."""
    theirs, mine = source.state_dict(), student.state_dict()
    candidates = dict(theirs)
    if student.config.head == "shuffle" and source.config.head == "conv":
        for key in [k for k in candidates if k.startswith("decoder.1.") or k.startswith("decoder.2.")]:
            del candidates[key]
        candidates.update(_shuffle_head(theirs, mine["decoder.2.1.weight"].shape))
    loaded = {}
    for key, value in mine.items():
        given = candidates.get(key)
        if given is None:
            continue
        if given.dim() == 4 and given.shape[:2] == value.shape[:2] and given.shape != value.shape:
            given = resample_kernel(given, value.shape[-1])
        if given.shape == value.shape:
            loaded[key] = given
    if not loaded:
        raise StylecastError("warm start: the student shares no layer (name and shape) with its --init")
    student.load_state_dict(loaded, strict=False)
    head = "decoder.2.1.weight"
    if teacher is None or photos is None or theirs[head].shape == mine[head].shape:
        return len(loaded), None
    return len(loaded), fit_output_conv(student, teacher, photos)
