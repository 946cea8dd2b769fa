"""TensorRT engines (``*.engine`` + JSON sidecar from `stylecast build-engine`) through the runtime's backend.

The backend checks the sidecar against this TensorRT and GPU and synchronizes before returning, so
the host clock times the whole call (copies included); it does not expose the stages apart.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from stylecast.benchmarks.runner import Runner, Sample
from stylecast.runtime.backends.tensorrt import import_tensorrt
from stylecast.runtime.errors import StylecastError
from stylecast.runtime.timing import elapsed_ms


def why_unavailable() -> str | None:
    try:
        import_tensorrt()
    except StylecastError:
        return "skipped: TensorRT not installed"
    return None


class TensorRTRunner(Runner):
    fmt = "TensorRT"

    def __init__(self, path: Path, precision: str) -> None:
        super().__init__(precision, "engine", path)

    def _load(self) -> None:
        from stylecast.runtime.backends.tensorrt import TensorRTBackend

        self.backend = TensorRTBackend(self.path)

    def close(self) -> None:
        self.backend = None  # its __del__ frees the device buffers

    def infer(self, batch: np.ndarray) -> tuple[np.ndarray, Sample]:
        start = time.perf_counter_ns()
        out = self.backend.run(batch)
        return out, Sample(elapsed_ms(start))
