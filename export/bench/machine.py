"""What the figures were measured on, and the machine's own speed limit for the same arithmetic.

Achieved GFLOP/s only means something next to what the hardware can do, so the suite measures
the peak itself (a large matmul per precision) instead of quoting a datasheet.
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import dataclass

import torch

from stylecast.runtime.metadata import tool_versions
from stylecast.train.trainer import resolve_precision

BENCH_TOOLS = ("torch", "onnx", "onnxruntime", "onnxruntime-gpu", "tensorrt", "numpy")


@dataclass
class Peak:
    precision: str
    gflops: float  # best of several timed matmuls: the attainable ceiling, not the average
    size: int


def cpu_model() -> str:
    """The CPU's brand string as cpuid reports it (VMs often hide it from /proc/cpuinfo)."""
    import cpuinfo

    return cpuinfo.get_cpu_info().get("brand_raw") or platform.processor() or "unknown CPU"


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def describe(device: torch.device, threads: int) -> dict:
    """Machine, accelerator and versions: the JSON header that makes two runs comparable."""
    info = {
        "cpu": cpu_model(),
        "cpu_cores_usable": usable_cores(),
        "threads": threads,
        "platform": platform.platform(),
        "device": str(device),
        "native_bf16": resolve_precision(device, "auto") == "bf16",
        "versions": json.loads(tool_versions(*BENCH_TOOLS)),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info["gpu"] = props.name
        info["gpu_memory_gib"] = round(props.total_memory / 2**30, 1)
        info["cuda"] = torch.version.cuda
    return info


def _operands(precision: str, size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, object]:
    if precision == "int8":
        a = torch.randint(-128, 127, (size, size), dtype=torch.int8, device=device)
        return a, a.clone(), torch._int_mm
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    a = torch.randn(size, size, dtype=dtype, device=device)
    return a, a.clone(), torch.mm


def matmul_peak(precision: str, device: torch.device, size: int = 2048, seconds: float = 1.5, calls: int = 5) -> Peak:
    """Best GFLOP/s (GOP/s for int8) of a square matmul (2·n³ operations) over at least ``calls`` calls
    and ``seconds``: on a shared machine a single call can be descheduled, the best of several is not."""
    a, b, mm = _operands(precision, size, device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(2):
        mm(a, b)
    sync()
    best, done, start = float("inf"), 0, time.perf_counter()
    while done < calls or time.perf_counter() - start < seconds:
        done += 1
        t0 = time.perf_counter()
        mm(a, b)
        sync()
        best = min(best, time.perf_counter() - t0)
    return Peak(precision, 2 * size**3 / best / 1e9, size)


def peak_precisions(device: torch.device) -> list[str]:
    """fp32 always; bf16 where it is native (emulated bf16 is no ceiling); fp16 on GPUs; int8."""
    found = ["fp32"]
    if resolve_precision(device, "auto") == "bf16":
        found.append("bf16")
    if device.type == "cuda":
        found.append("fp16")
    return [*found, "int8"]


def measure_peaks(device: torch.device, seconds: float) -> dict[str, dict]:
    peaks = {}
    for precision in peak_precisions(device):
        try:
            peak = matmul_peak(precision, device, seconds=seconds)
        except (RuntimeError, NotImplementedError) as exc:  # e.g. no int8 matmul kernel on this build
            peaks[precision] = {"error": str(exc).splitlines()[0]}
            continue
        peaks[precision] = {"gflops": round(peak.gflops, 1), "matmul_size": peak.size}
    return peaks
