"""OpenVINO, one runner per ONNX file, through the runtime's own backend (as `stylize --backend openvino` runs it)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from stylecast.benchmarks.runner import Runner, Sample
from stylecast.runtime.backends.openvino import import_openvino
from stylecast.runtime.errors import StylecastError
from stylecast.runtime.timing import elapsed_ms

DEVICE = "CPU"  # the bench times CPUs; PyTorch on CUDA is compared with ONNX Runtime's and TensorRT's GPU rows


def why_unavailable() -> str | None:
    try:
        import_openvino()
    except StylecastError:
        return "skipped: OpenVINO not installed (pip install 'stylecast[openvino]')"
    return None


class OpenVinoRunner(Runner):
    fmt = "OpenVINO"

    def __init__(self, path: Path, precision: str, threads: int) -> None:
        super().__init__(precision, DEVICE, path)
        self.threads = threads

    def _load(self) -> None:
        from stylecast.runtime.backends.openvino import OpenVinoBackend

        self.backend = OpenVinoBackend(self.path, device=DEVICE, threads=self.threads)

    def close(self) -> None:
        self.backend = None  # with it go the compiled model of every resolution

    def infer(self, batch: np.ndarray) -> tuple[np.ndarray, Sample]:
        start = time.perf_counter_ns()
        out = self.backend.run(batch)
        return out, Sample(elapsed_ms(start))
