"""What the figures were measured on, and the machine's own speed limit for the same arithmetic.

Achieved GFLOP/s only means something next to what the hardware can do, so the suite measures
the peak itself (a large matmul per precision) instead of quoting a datasheet.
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import dataclass

import torch

from stylecast.runtime.artifacts import tool_versions
from stylecast.runtime.machine import fingerprint, usable_cores
from stylecast.train.precision import measured_verdict

BENCH_TOOLS = ("torch", "onnx", "onnxruntime", "onnxruntime-gpu", "tensorrt", "numpy")


@dataclass
class Peak:
    precision: str
    gflops: float  # best of several timed matmuls: the attainable ceiling, not the average
    size: int


def describe(device: torch.device, threads: int) -> dict:
    """Machine, accelerator and versions: the JSON header that makes two runs comparable."""
    print_ = fingerprint()
    verdict = measured_verdict(device)
    info = {
        "cpu": print_["cpu"],
        "cpu_cores_usable": usable_cores(),
        "threads": threads,
        "platform": platform.platform(),
        "device": str(device),
        "fingerprint": print_,
        "precision_probe": {"candidate": verdict.candidate, "speed_vs_fp32": round(1 / verdict.ratio, 3),
                            "auto_picks": verdict.precision},
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
    """fp32, bf16 and int8 everywhere (fp16 on GPUs); one that is slower than fp32 is reported as no ceiling."""
    return ["fp32", "bf16", *(["fp16"] if device.type == "cuda" else []), "int8"]


def measure_peaks(device: torch.device, seconds: float, probe_size: int = 256) -> dict[str, dict]:
    """Each precision's peak, after one small call of each: an emulated precision (bf16 or int8 without
    native kernels can be 100x slower) is no ceiling, and a full-size call of it would take minutes."""
    fp32_small = matmul_peak("fp32", device, probe_size, seconds=0.0, calls=2).gflops
    peaks = {}
    for precision in peak_precisions(device):
        try:
            small = matmul_peak(precision, device, probe_size, seconds=0.0, calls=2).gflops
            if precision != "fp32" and small < fp32_small:
                peaks[precision] = {"error": f"slower than fp32 here ({small:.0f} vs {fp32_small:.0f} GFLOP/s at "
                                             f"{probe_size}²): no ceiling"}
                continue
            peak = matmul_peak(precision, device, seconds=seconds)
        except (RuntimeError, NotImplementedError) as exc:  # e.g. no int8 matmul kernel on this build
            peaks[precision] = {"error": str(exc).splitlines()[0]}
            continue
        peaks[precision] = {"gflops": round(peak.gflops, 1), "matmul_size": peak.size}
    return peaks
