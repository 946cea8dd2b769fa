"""TensorRT backend: a prebuilt engine, checked against this TensorRT and GPU, run with execute_async_v3."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..cuda_device import CudaDevice, open_device
from ..errors import StylecastError
from ..metadata import require
from ..tensorrt_build import ENGINE_FORMAT, Profile, Target, check_sidecar, import_tensorrt, read_sidecar
from .base import Backend


def running_target(trt, device: CudaDevice) -> Target:  # noqa: ANN001 - the tensorrt module
    name, capability = device.describe()
    return Target(trt.__version__, name, capability)


def check_shape(shape: tuple[int, ...], profile: Profile, path: Path) -> None:
    """A clear refusal instead of TensorRT's error when an input falls outside the built profile."""
    if not profile.contains(shape):
        wanted = "x".join(map(str, shape))
        raise StylecastError(f"{path}: input {wanted} is outside the engine's profile "
                             f"{profile.as_text()['min']}..{profile.as_text()['max']}; resize with --max-side or "
                             f"rebuild with `stylecast build-engine MODEL.onnx --max {wanted}`")


class TensorRTBackend(Backend):
    """NVIDIA samples' TensorRTInfer: deserialize once, grow device/pinned buffers only when needed."""

    name = "tensorrt"

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.sidecar = read_sidecar(self.path)
        require({k: str(v) for k, v in self.sidecar.items()}, ENGINE_FORMAT, self.path)
        trt = import_tensorrt()
        self.device = open_device()
        check_sidecar(self.sidecar, running_target(trt, self.device), self.path)
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        self.engine = self.runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self.engine is None:
            raise StylecastError(f"{self.path}: TensorRT could not deserialize it; rebuild it here with "
                                 f"`stylecast build-engine {self.sidecar.get('onnx_file', 'MODEL.onnx')}`")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if n not in inputs]
        if len(inputs) != 1 or len(outputs) != 1:
            raise StylecastError(f"{self.path}: expected one input and one output tensor, found {names}")
        self.input_name, self.output_name = inputs[0], outputs[0]
        self.profile = Profile(*(tuple(s) for s in self.engine.get_tensor_profile_shape(self.input_name, 0)))
        self._buffers: dict[str, tuple[int, np.ndarray]] = {}

    @property
    def metadata(self) -> dict[str, str]:
        return {k: v if isinstance(v, str) else str(v) for k, v in self.sidecar.items()}

    def _buffer(self, name: str, count: int) -> tuple[int, np.ndarray]:
        """Device and pinned host memory for ``count`` floats, reused until a larger call needs more."""
        held = self._buffers.get(name)
        if held is None or held[1].size < count:
            if held is not None:
                self.device.free(held[0])
                self.device.free(held[1].ctypes.data)
            held = (self.device.malloc(count * 4), self.device.pinned(count))
            self._buffers[name] = held
        return held

    def run(self, batch: np.ndarray) -> np.ndarray:
        batch = np.ascontiguousarray(batch, np.float32)
        check_shape(batch.shape, self.profile, self.path)
        self.context.set_input_shape(self.input_name, batch.shape)
        out_shape = tuple(self.context.get_tensor_shape(self.output_name))
        in_ptr, in_host = self._buffer(self.input_name, batch.size)
        out_ptr, out_host = self._buffer(self.output_name, int(np.prod(out_shape)))
        in_host[:batch.size] = batch.ravel()
        self.device.to_device(in_ptr, in_host[:batch.size])
        self.context.set_tensor_address(self.input_name, in_ptr)
        self.context.set_tensor_address(self.output_name, out_ptr)
        if not self.context.execute_async_v3(self.device.stream_handle):
            raise StylecastError(f"{self.path}: TensorRT execution failed (see its log above)")
        result = out_host[:int(np.prod(out_shape))]
        self.device.to_host(result, out_ptr)
        self.device.synchronize()
        return result.reshape(out_shape).copy()

    def describe(self) -> str:
        return f"tensorrt {self.sidecar.get('tensorrt_version')} {self.sidecar.get('precision')}"

    def __del__(self) -> None:
        for pointer, host in getattr(self, "_buffers", {}).values():
            self.device.free(pointer)
            self.device.free(host.ctypes.data)
