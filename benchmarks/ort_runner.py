"""ONNX Runtime, one runner per (ONNX file, execution provider), through the runtime's own backend: the
sessions users get (memory arena on: each session keeps its buffers between calls), so the suite opens
them per model and resolution and frees them before the next, which bounds the memory the arenas hold."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from stylecast.benchmarks.runner import Runner, Sample
from stylecast.runtime.backends.onnxruntime import OnnxRuntimeBackend, import_ort
from stylecast.runtime.errors import StylecastError
from stylecast.runtime.timing import elapsed_ms

# Providers that run no local graph (Azure calls remote endpoints): a row for them would time CPU twice.
NOT_ENGINES = {"AzureExecutionProvider"}
DEVICE_PROVIDERS = {"CUDAExecutionProvider", "TensorrtExecutionProvider"}
# Idle ORT threads otherwise spin after each run and steal the cores from the next format in the round.
NO_SPINNING = {"session.intra_op.allow_spinning": "0", "session.inter_op.allow_spinning": "0"}


def providers() -> list[str]:
    return [p for p in import_ort().get_available_providers() if p not in NOT_ENGINES]


def short_name(provider: str) -> str:
    return provider.removesuffix("ExecutionProvider")


class OrtRunner(Runner):
    fmt = "ONNX Runtime"

    def __init__(self, path: Path, precision: str, provider: str, threads: int) -> None:
        super().__init__(precision, short_name(provider), path)
        self.provider, self.threads = provider, threads

    def _load(self) -> None:
        self.backend = OnnxRuntimeBackend(self.path, providers=[self.provider], threads=self.threads, config=NO_SPINNING)
        used = self.backend.session.get_providers()[0]
        if used != self.provider:
            raise StylecastError(f"{self.path}: ONNX Runtime fell back from {self.provider} to {used}")
        self.output = self.backend.session.get_outputs()[0].name

    def close(self) -> None:
        self.backend = None

    def infer(self, batch: np.ndarray) -> tuple[np.ndarray, Sample]:
        if self.provider in DEVICE_PROVIDERS:
            return self._infer_on_device(batch)
        start = time.perf_counter_ns()
        out = self.backend.run(batch)
        return out, Sample(elapsed_ms(start))

    def _infer_on_device(self, batch: np.ndarray) -> tuple[np.ndarray, Sample]:
        """IO binding splits the copies from the compute; each ORT call returns once its work is done."""
        ort, session = import_ort(), self.backend.session
        start = time.perf_counter_ns()
        device_in = ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(batch, np.float32), "cuda", 0)
        uploaded = time.perf_counter_ns()
        binding = session.io_binding()
        binding.bind_ortvalue_input(self.backend.input_name, device_in)
        binding.bind_output(self.output, "cuda", 0)
        session.run_with_iobinding(binding)
        computed = time.perf_counter_ns()
        out = binding.copy_outputs_to_cpu()[0]
        return out, Sample(elapsed_ms(start), (uploaded - start) / 1e6, (computed - uploaded) / 1e6, elapsed_ms(computed))
