"""OpenVINO, one runner per ONNX file, through the runtime's own backend (as `stylize --backend openvino` runs it)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from stylecast.benchmarks.runner import Runner, Sample
from stylecast.runtime.backends.openvino import has_bf16_kernels, import_openvino
from stylecast.runtime.errors import StylecastError
from stylecast.runtime.timing import elapsed_ms

DEVICE = "CPU"  # the bench times CPUs; PyTorch on CUDA is compared with ONNX Runtime's and TensorRT's GPU rows


def why_unavailable() -> str | None:
    try:
        import_openvino()
    except StylecastError:
        return "skipped: OpenVINO not installed (pip install 'stylecast[openvino]')"
    return None


def why_no_bf16() -> str | None:
    """Why this CPU gets no OpenVINO bf16 rows (the fp32 and int8 files at the bf16 inference precision), or None."""
    if not has_bf16_kernels(import_openvino().Core()):
        return "skipped: OpenVINO runs no bf16 kernels on this CPU"
    return None


class OpenVinoRunner(Runner):
    """The file at its own precision, or (``bf16=True``) with OpenVINO's bf16 inference precision for its float ops:
    a row of its own (engine "CPU bf16"; an fp32 file's row is then bf16, judged by the bf16 floor), never passed
    off as the file's own precision."""

    fmt = "OpenVINO"

    def __init__(self, path: Path, precision: str, threads: int, bf16: bool = False) -> None:
        super().__init__("bf16" if bf16 and precision == "fp32" else precision, f"{DEVICE} bf16" if bf16 else DEVICE,
                         path)
        self.threads, self.cpu_precision = threads, "bf16" if bf16 else "f32"

    def _load(self) -> None:
        from stylecast.runtime.backends.openvino import OpenVinoBackend

        self.backend = OpenVinoBackend(self.path, device=DEVICE, threads=self.threads, precision=self.cpu_precision)

    def close(self) -> None:
        self.backend = None  # with it go the compiled model of every resolution

    def infer(self, batch: np.ndarray) -> tuple[np.ndarray, Sample]:
        start = time.perf_counter_ns()
        out = self.backend.run(batch)
        return out, Sample(elapsed_ms(start))
