"""PyTorch as the baseline (eager fp32) and its optimised modes: channels_last, autocast, compile, CUDA graphs."""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import numpy as np
import torch

from stylecast.benchmarks.cuda_stages import CudaStages
from stylecast.benchmarks.runner import Runner, Sample
from stylecast.runtime.timing import elapsed_ms
from stylecast.train.compiled import compiler_missing
from stylecast.train.precision import autocast_for, measured_verdict

BASELINE = "eager"


@dataclass(frozen=True)
class TorchMode:
    name: str
    precision: str = "fp32"
    channels_last: bool = False
    compile: bool = False
    cuda_graph: bool = False


MODES = {m.name: m for m in (
    TorchMode(BASELINE),
    TorchMode("channels_last", channels_last=True),
    TorchMode("bf16 autocast", "bf16", channels_last=True),
    TorchMode("fp16 autocast", "fp16", channels_last=True),
    TorchMode("compile", channels_last=True, compile=True),
    TorchMode("cuda graph", cuda_graph=True),
)}


def default_modes(device: torch.device) -> list[str]:
    """Every mode that can run on ``device``; the suite reports the others as skipped, not silently."""
    gpu_only = {"fp16 autocast", "cuda graph"}
    return [name for name in MODES if device.type == "cuda" or name not in gpu_only]


def unavailable(mode: TorchMode, device: torch.device) -> str | None:
    """Why ``mode`` cannot be measured here, or None."""
    if (mode.cuda_graph or mode.precision == "fp16") and device.type != "cuda":
        return f"skipped: {mode.name} needs a CUDA GPU"
    if mode.compile and (why := compiler_missing(device)):
        return f"skipped: {why}"
    if mode.precision == "bf16" and device.type == "cpu":
        verdict = measured_verdict(device)
        if verdict.emulated:  # a single 1080p call would take many minutes
            return (f"skipped: bf16 autocast measured {verdict.ratio:.0f}x slower than fp32 on this CPU "
                    "(precision probe): emulated, not timed")
    return None


class TorchRunner(Runner):
    fmt = "PyTorch"

    def __init__(self, model: torch.nn.Module, mode: TorchMode, device: torch.device) -> None:
        super().__init__(mode.precision, mode.name)
        self.mode, self.device, self.source = mode, device, model
        self.stages: CudaStages | None = None

    def _load(self) -> None:
        model = copy.deepcopy(self.source).eval().to(self.device)  # each mode changes its own copy
        if self.mode.channels_last:
            model = model.to(memory_format=torch.channels_last)
        # compile is lazy: its cost lands in each resolution's first call, reported as set-up time.
        self.forward = torch.compile(model, dynamic=False) if self.mode.compile else model
        self.autocast = autocast_for(self.device, self.mode.precision)

    def close(self) -> None:
        self.forward = self.compute = self.stages = None

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode(), self.autocast:
            if self.mode.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            return self.forward(x).float()

    def infer(self, batch: np.ndarray) -> tuple[np.ndarray, Sample]:
        if self.device.type == "cuda":
            return self._infer_cuda(batch)
        start = time.perf_counter_ns()
        out = self._forward(torch.from_numpy(batch)).contiguous().numpy()
        return out, Sample(elapsed_ms(start))

    def _infer_cuda(self, batch: np.ndarray) -> tuple[np.ndarray, Sample]:
        if self.stages is None or self.stages.shape != batch.shape:
            self.stages = CudaStages(batch.shape, self.device)
            self.compute = self._capture(self.stages.device_in) if self.mode.cuda_graph else self._forward
        return self.stages.run(batch, self.compute)

    def _capture(self, static_in: torch.Tensor):  # noqa: ANN202 - returns the replay closure
        """Record one forward into a CUDA graph: replays skip Python and kernel-launch overhead."""
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(3):  # cuDNN picks its algorithms before capture
                self._forward(static_in)
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_out = self._forward(static_in)

        def replay(_: torch.Tensor) -> torch.Tensor:
            graph.replay()
            return static_out

        return replay
