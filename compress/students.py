"""Students vs their teacher: cost (params, GFLOPs, latency on the deployed engines) and likeness on held-out
photos."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from stylecast.compress.prune import gflops
from stylecast.runtime.backends import Backend, load_backend
from stylecast.runtime.errors import StylecastError
from stylecast.runtime.formats import BACKENDS, FILE_KINDS, ONNX, BackendOptions
from stylecast.runtime.metrics import psnr, ssim
from stylecast.runtime.timing import median_ms
from stylecast.train.checkpoint import LoadedModel
from stylecast.train.data import load_style_image
from stylecast.train.losses import LossWeights, PerceptualLoss
from stylecast.train.model import count_parameters
from stylecast.train.vgg import load_loss_net

SIZES = {"256": (256, 256), "512": (512, 512), "1080p": (1080, 1920)}
# Deployment-student candidates, designed for int8 CPU engines rather than for FLOPs: channel counts that are
# multiples of 16 (whole SIMD/VNNI lanes), a cheaper output head than the 9x9 32->3 conv (5% of the teacher's
# FLOPs, 14-28% of its time), depthwise-separable residual blocks, fewer blocks. Name one with
# `stylecast compress --student NAME` (or distil it with `--arch SPEC`); `make students-latency` times them.
CANDIDATES = {
    "w16k3": "width=16,last_kernel=3",
    "w16r3k3": "width=16,res_blocks=3,last_kernel=3",
    "w16ps": "width=16,head=shuffle,last_kernel=1",
    "w16ps3": "width=16,head=shuffle,last_kernel=3",
    "dw16k3": "width=16,depthwise=1,last_kernel=3",
    "dw32r4ps": "width=32,depthwise=1,res_blocks=4,head=shuffle,last_kernel=3",
}
# The bar a student must clear: >= 3.5x fewer FLOPs, SSIM >= 0.90 vs the teacher, style loss within 15% of the teacher's.
TARGET = {"flops_ratio": 3.5, "ssim": 0.90, "style_delta": 0.15}


@dataclass
class Entry:
    name: str
    model: LoadedModel
    onnx: dict[str, Path]  # precision -> exported file


def cost(entry: Entry) -> dict:
    net = entry.model.model
    return {"params": count_parameters(net), "arch": json.loads(entry.model.meta["arch"]),
            "method": entry.model.meta.get("method", "train"), "steps": int(entry.model.meta.get("steps", 0)),
            "gflops": {k: round(gflops(net, h, w), 2) for k, (h, w) in SIZES.items()}}


# The deployed engines each model is timed on: (label, backend, precision), every backend of the format table that
# runs ONNX files at each precision a student is exported in.
ENGINES = tuple((f"{BACKENDS[name].short} {precision}", name, precision)
                for name in FILE_KINDS[ONNX].backends for precision in ("fp32", "int8"))


def latencies(entries: list[Entry], size: int, threads: int, rounds: int = 3) -> dict[str, dict[str, float | str]]:
    """Median ms per model and deployed engine at size², rounds interleaved so a neighbour's load hits every
    one alike; an engine that cannot run says why instead."""
    batch = np.random.default_rng(0).uniform(0, 255, (1, 3, size, size)).astype(np.float32)
    out: dict[str, dict[str, float | str]] = {e.name: {} for e in entries}
    with contextlib.ExitStack() as stack:
        backends: dict[tuple[str, str], Backend] = {}
        for entry in entries:
            for label, name, precision in ENGINES:
                path = entry.onnx.get(precision)
                try:
                    if path is None:
                        raise StylecastError(f"no {precision} export")
                    opened = load_backend(path, BackendOptions(backend=name, threads=threads))
                    backends[entry.name, label] = stack.enter_context(opened)
                except StylecastError as exc:
                    out[entry.name][label] = f"not run: {exc}"
        times: dict[tuple[str, str], list[float]] = {key: [] for key in backends}
        for _ in range(rounds):
            for key, backend in backends.items():
                times[key].append(median_ms(lambda b=backend: b.run(batch), warmup=1, repeats=3))
    for (name, label), samples in times.items():
        out[name][label] = round(float(np.median(samples)), 2)
    return out


def perceptual(style_image: Path, teacher_meta: dict[str, str], loss_net_weights: Path | None) -> PerceptualLoss:
    """The teacher's own loss network, loss weights and Gram targets, so style/content losses are comparable."""
    hyper = json.loads(teacher_meta.get("hyperparameters", "{}"))
    weights = LossWeights(**hyper.get("loss", {}))
    style_size = hyper.get("style_size", 512)
    name = hyper.get("loss_net", "vgg16")
    vgg = load_loss_net(name, [weights.content_layer, *weights.style_layers], "cpu", loss_net_weights)
    return PerceptualLoss(vgg, load_style_image(style_image, style_size), weights).eval()


def stylize(net: torch.nn.Module, photo: np.ndarray) -> torch.Tensor:
    with torch.no_grad():
        return net.eval()(torch.from_numpy(photo.transpose(2, 0, 1)[None].astype(np.float32))).round()


def quality(teacher: Entry, students: list[Entry], photos: list[np.ndarray], loss: PerceptualLoss,
            tick: Callable[[], None] = lambda: None) -> tuple[dict[str, dict], dict[str, list[np.ndarray]]]:
    """Per model: mean PSNR/SSIM vs the teacher's output, mean style and content loss, and the outputs."""
    outputs: dict[str, list[np.ndarray]] = {e.name: [] for e in [teacher, *students]}
    sums: dict[str, dict[str, list[float]]] = {name: {"psnr": [], "ssim": [], "style": [], "content": []}
                                               for name in outputs}
    for photo in photos:
        content = torch.from_numpy(photo.transpose(2, 0, 1)[None].astype(np.float32))
        reference = None
        for entry in [teacher, *students]:
            out = stylize(entry.model.model, photo)
            with torch.no_grad():
                terms = loss(out, content)
            rgb = out[0].numpy().transpose(1, 2, 0)
            reference = rgb if reference is None else reference
            row = sums[entry.name]
            row["style"].append(float(terms["style"]))
            row["content"].append(float(terms["content"]))
            row["psnr"].append(min(psnr(reference, rgb), 99.0))
            row["ssim"].append(ssim(reference, rgb))
            outputs[entry.name].append(rgb.astype(np.uint8))
            tick()
    means = {name: {k: float(np.mean(v)) for k, v in row.items()} for name, row in sums.items()}
    return means, outputs


def deployed_ms(row: dict) -> float:
    """The model's fastest engine at the eval size; int8 engines count only if its int8 export kept parity."""
    ok = [v for k, v in row["latency_ms"].items()
          if isinstance(v, float) and (row.get("int8_passed", True) or "int8" not in k)]
    return min(ok, default=float("inf"))


def pareto(rows: dict[str, dict]) -> list[str]:
    """Models no other beats on both deployed latency and SSIM vs the teacher."""
    return [name for name, row in rows.items()
            if not any(deployed_ms(o) <= deployed_ms(row) and o["ssim"] >= row["ssim"]
                       and (deployed_ms(o), o["ssim"]) != (deployed_ms(row), row["ssim"]) for o in rows.values())]


def verdict(row: dict, teacher: dict) -> dict:
    """The target check for one student, with the numbers it rests on."""
    flops_ratio = teacher["gflops"]["512"] / row["gflops"]["512"]
    style_delta = round(row["style_loss"] / teacher["style_loss"] - 1.0, 4)  # as reported: -15.00% passes like +15.00%
    checks = {"flops_ratio": flops_ratio >= TARGET["flops_ratio"], "ssim": row["ssim"] >= TARGET["ssim"],
              "style_delta": abs(style_delta) <= TARGET["style_delta"]}
    return {"flops_ratio": round(flops_ratio, 2), "style_delta": style_delta,
            "content_delta": round(row["content_loss"] / teacher["content_loss"] - 1.0, 4),
            "meets": checks, "meets_target": all(checks.values())}
