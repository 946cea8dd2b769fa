"""``--precision auto``: a reduced precision only where it is measured faster on this machine.

CPU flags say that bf16 kernels exist, not that they are fast: CPUs that all report bf16 support
train faster on some and slower on others, and without native bf16 kernels autocast runs many
times slower than fp32. So ``auto`` times a few conv forward+backward passes in fp32 and in the
candidate precision, once per machine class and thread count, and caches the verdict with the
machine's fingerprint.
"""

from __future__ import annotations

import statistics
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass

import torch
from torch import nn

from stylecast.runtime.errors import StylecastError
from stylecast.runtime.machine import class_id, fingerprint
from stylecast.runtime.probes import FASTER_BELOW, cached_probe
from stylecast.runtime.timing import timed_ms

PRECISIONS = ("fp32", "bf16", "fp16")
PROBE_VERSION = 1
# Slower than this many times fp32 and the candidate is emulated: the probe stops, the bench skips it.
EMULATED_ABOVE = 3.0
ROUNDS = 3


@dataclass(frozen=True)
class Verdict:
    """What the probe measured and what ``auto`` therefore picks."""

    precision: str  # what auto uses
    candidate: str  # the reduced precision that was tried
    ratio: float  # candidate time / fp32 time per pass (below 1: the candidate is faster)
    fp32_ms: float
    candidate_ms: float
    measured: str
    threads: int
    cached: bool = False

    @property
    def emulated(self) -> bool:
        return self.ratio > EMULATED_ABOVE

    def reason(self) -> str:
        where = "cached probe" if self.cached else "probe"
        return (f"{self.candidate} autocast ran at {1 / self.ratio:.2f}x the speed of fp32 "
                f"({self.candidate_ms:.0f} vs {self.fp32_ms:.0f} ms per conv forward+backward, {self.threads} thread(s), "
                f"{where} of {self.measured}); it is used only when faster than {1 / FASTER_BELOW:.2f}x")


def autocast_for(device: torch.device, precision: str):  # noqa: ANN201 - a context manager
    if precision == "fp32":
        return nullcontext()
    return torch.autocast(device.type, dtype={"bf16": torch.bfloat16, "fp16": torch.float16}[precision])


def candidate_for(device: torch.device) -> str:
    """The reduced precision worth probing: bf16, or fp16 on GPUs without bf16 (pre-Ampere)."""
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return "fp16"
    return "bf16"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _workload(device: torch.device) -> tuple[nn.Module, torch.Tensor]:
    """VGG-like 3x3 convs (what dominates training and Gatys), small enough that emulated bf16 ends in seconds."""
    generator = torch.Generator().manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(),
                        nn.Conv2d(64, 128, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(128, 128, 3, padding=1))
    return net.to(device), torch.rand(2, 3, 48, 48, generator=generator).to(device)


def _pass_ms(net: nn.Module, x: torch.Tensor, precision: str, device: torch.device) -> float:
    def forward_backward() -> None:
        with autocast_for(device, precision):
            loss = net(x).float().square().mean()
        loss.backward()
        _sync(device)

    net.zero_grad(set_to_none=True)
    _sync(device)
    return timed_ms(forward_backward)[1]


def probe(device: torch.device) -> Verdict:
    """Interleaved fp32/candidate passes after a warm-up of each; medians.

    The candidate's warm-up is timed too: when it is already many times slower than fp32 the
    candidate is emulated, and more passes would take long and change nothing.
    """
    candidate = candidate_for(device)
    net, x = _workload(device)
    _pass_ms(net, x, "fp32", device)
    first = _pass_ms(net, x, candidate, device)
    fp32, reduced = [_pass_ms(net, x, "fp32", device)], []
    if first > EMULATED_ABOVE * fp32[0]:
        reduced.append(first)
    else:
        for _ in range(ROUNDS):
            reduced.append(_pass_ms(net, x, candidate, device))
            fp32.append(_pass_ms(net, x, "fp32", device))
    fp32_ms, reduced_ms = statistics.median(fp32), statistics.median(reduced)
    ratio = reduced_ms / fp32_ms
    return Verdict(candidate if ratio < FASTER_BELOW else "fp32", candidate, round(ratio, 3), round(fp32_ms, 2),
                   round(reduced_ms, 2), time.strftime("%Y-%m-%d"), torch.get_num_threads())


def _cache_key(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda-{torch.cuda.get_device_name(device)}-torch{torch.__version__}"
    return f"cpu-{class_id(fingerprint())}-{torch.get_num_threads()}t-torch{torch.__version__}"


def measured_verdict(device: torch.device) -> Verdict:
    """The cached verdict for this machine class and thread count, probing (a few seconds) if there is none."""
    def measure() -> dict:
        fields = asdict(probe(device))
        del fields["cached"]
        return fields

    entry, cached = cached_probe(_cache_key(device), PROBE_VERSION, measure,
                                 lambda: fingerprint() if device.type == "cpu" else None)
    return Verdict(**{k: entry[k] for k in Verdict.__dataclass_fields__ if k in entry and k != "cached"}, cached=cached)


@dataclass(frozen=True)
class Choice:
    precision: str
    reason: str


def resolve_precision(device: torch.device, precision: str) -> Choice:
    """An explicit precision as given; ``auto`` by measurement (see the module docstring)."""
    if precision != "auto":
        if precision not in PRECISIONS:
            raise StylecastError(f"--precision {precision}: choose auto or one of {', '.join(PRECISIONS)}")
        return Choice(precision, "as asked (--precision)")
    verdict = measured_verdict(device)
    return Choice(verdict.precision, verdict.reason())
