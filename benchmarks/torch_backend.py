"""PyTorch as a bench-side backend: the baseline (eager fp32) and its optimised modes (channels_last, autocast,
compile, CUDA graphs) behind the runtime's ``Backend`` interface, so the suite times it like every engine of the
format table. It lives with the bench because the runtime stays torch-free."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from stylecast.benchmarks.cuda_stages import CudaStages
from stylecast.runtime.backends import Backend, Stages
from stylecast.runtime.formats import BackendOptions
from stylecast.train.checkpoint import load_model
from stylecast.train.compiled import compiler_missing
from stylecast.train.precision import autocast_for, measured_verdict

LABEL = "PyTorch"  # the bench's format column for these rows
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


class TorchBackend(Backend):
    """One checkpoint in one PyTorch mode on one device; each backend changes its own copy of the model.

    On CUDA, ``run_staged`` times upload, compute and download apart with CUDA events (``CudaStages``)."""

    name = "pytorch"

    def __init__(self, path: Path, model: torch.nn.Module, meta: dict[str, str], mode: TorchMode = MODES[BASELINE],
                 device: torch.device | None = None) -> None:
        super().__init__(path)
        self._meta, self.mode = meta, mode
        self.device = device or torch.device("cpu")
        net = copy.deepcopy(model).eval().to(self.device)
        if mode.channels_last:
            net = net.to(memory_format=torch.channels_last)
        # compile is lazy: its cost lands in each resolution's first call, reported as set-up time.
        self.forward = torch.compile(net, dynamic=False) if mode.compile else net
        self.autocast = autocast_for(self.device, mode.precision)
        self.stages: CudaStages | None = None
        self.compute = self._forward

    @classmethod
    def open(cls, path: Path, options: BackendOptions) -> TorchBackend:
        """The checkpoint at ``path`` in eager fp32 on the CPU."""
        loaded = load_model(path)
        return cls(path, loaded.model, loaded.meta)

    @property
    def metadata(self) -> dict[str, str]:
        return self._meta

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode(), self.autocast:
            if self.mode.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            return self.forward(x).float()

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self.run_staged(batch)[0]

    def run_staged(self, batch: np.ndarray) -> tuple[np.ndarray, Stages | None]:
        if self.device.type != "cuda":
            return self._forward(torch.from_numpy(np.ascontiguousarray(batch, np.float32))).contiguous().numpy(), None
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

    def describe(self) -> str:
        return f"pytorch {self.mode.name} on {self.device}"

    def close(self) -> None:
        self.forward = self.compute = self.stages = None

