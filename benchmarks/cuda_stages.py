"""Host->device, compute and device->host timed apart with CUDA events on one stream.

Wall-clock timers on the host cannot split the three, and they also count launch gaps; events
record on the GPU's own clock. Pinned host buffers make the copies asynchronous and their
timing representative of a real pipeline.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from stylecast.runtime.backends import Stages


class CudaStages:
    """Buffers for one input shape: pinned host in/out, a device input, four events."""

    def __init__(self, shape: tuple[int, ...], device: torch.device, input_dtype: torch.dtype = torch.float32,
                 stream: torch.cuda.Stream | None = None) -> None:
        self.shape = shape
        self.stream = stream or torch.cuda.current_stream(device)
        self.host_in = torch.empty(shape, dtype=torch.float32).pin_memory()
        self.host_out = torch.empty(shape, dtype=torch.float32).pin_memory()
        self.device_in = torch.empty(shape, dtype=input_dtype, device=device)
        self.events = [torch.cuda.Event(enable_timing=True) for _ in range(4)]

    def run(self, batch: np.ndarray, compute: Callable[[torch.Tensor], torch.Tensor]) -> tuple[np.ndarray, Stages]:
        """``compute(device_input) -> device_output``; the output is copied back as float32."""
        self.host_in.copy_(torch.from_numpy(batch))
        h2d, done, computed, back = self.events
        with torch.cuda.stream(self.stream):
            h2d.record()
            self.device_in.copy_(self.host_in, non_blocking=True)
            done.record()
            out = compute(self.device_in)
            computed.record()
            self.host_out.copy_(out, non_blocking=True)
            back.record()
        back.synchronize()
        result = self.host_out.numpy().copy()
        return result, Stages(h2d.elapsed_time(done), done.elapsed_time(computed), computed.elapsed_time(back))
