"""What the figures were measured on, and the machine's own speed limit for the same arithmetic.

Achieved GFLOP/s only means something next to what the hardware can do, so the suite measures
the peak itself (a large matmul per precision) instead of quoting a datasheet.
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import dataclass

import numpy as np
import torch

from stylecast.runtime.artifacts import tool_versions
from stylecast.runtime.formats import BACKENDS
from stylecast.runtime.machine import fingerprint, usable_cores
from stylecast.train.precision import measured_verdict

# Beside these, each backend of the format table, named after its package (read when a run starts, so rows
# registered by then count); onnxruntime-gpu is the GPU build of the default ONNX backend.
BENCH_TOOLS = ("torch", "onnx", "onnxruntime-gpu", "numpy")


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
        "versions": json.loads(tool_versions(*BENCH_TOOLS, *BACKENDS)),
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


def ort_int8_peak(threads: int, size: int = 2048, seconds: float = 1.5, calls: int = 5) -> float:
    """Best GOP/s of ONNX Runtime's u8 x s8 MatMulInteger: the int8 GEMM that the deployed int8 engines (QDQ
    convs lowered to integer GEMMs) run on. torch's own int8 matmul has no fast kernel on some CPUs (orders of
    magnitude below fp32), which would leave the int8 rows without a ceiling although their engines have one."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from stylecast.runtime.backends.onnxruntime import import_ort

    ort = import_ort()
    rng = np.random.default_rng(0)
    weights = numpy_helper.from_array(rng.integers(-128, 128, (size, size), dtype=np.int8), "b")
    graph = helper.make_graph([helper.make_node("MatMulInteger", ["a", "b"], ["y"])], "int8_peak",
                              [helper.make_tensor_value_info("a", TensorProto.UINT8, [size, size])],
                              [helper.make_tensor_value_info("y", TensorProto.INT32, [size, size])], [weights])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    onnx.checker.check_model(model)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    feed = {"a": rng.integers(0, 256, (size, size), dtype=np.uint8)}
    session.run(None, feed)
    best, done, start = float("inf"), 0, time.perf_counter()
    while done < calls or time.perf_counter() - start < seconds:
        done += 1
        t0 = time.perf_counter()
        session.run(None, feed)
        best = min(best, time.perf_counter() - t0)
    return 2 * size**3 / best / 1e9


def peak_precisions(device: torch.device) -> list[str]:
    """fp32, bf16 and int8 everywhere (fp16 on GPUs); one that is slower than fp32 is reported as no ceiling."""
    return ["fp32", "bf16", *(["fp16"] if device.type == "cuda" else []), "int8"]


def measure_peaks(device: torch.device, seconds: float, threads: int, probe_size: int = 256) -> dict[str, dict]:
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
    if device.type == "cpu":
        _int8_engine_peak(peaks, threads, seconds)
    return peaks


def _int8_engine_peak(peaks: dict[str, dict], threads: int, seconds: float) -> None:
    """The int8 ceiling is the faster of torch's int8 matmul and ONNX Runtime's integer GEMM; both are kept."""
    try:
        engine = ort_int8_peak(threads, seconds=seconds)
    except Exception as exc:  # noqa: BLE001 - no onnxruntime, or no integer kernel: torch's figure stands
        peaks.setdefault("int8", {})["onnxruntime_error"] = str(exc).splitlines()[0]
        return
    torch_int8 = peaks.get("int8", {})
    if engine > torch_int8.get("gflops", 0.0):
        peaks["int8"] = {"gflops": round(engine, 1), "matmul_size": 2048, "source": "onnxruntime MatMulInteger u8xs8",
                         **({"torch": torch_int8} if torch_int8 else {})}
    else:
        torch_int8["onnxruntime_gflops"] = round(engine, 1)
