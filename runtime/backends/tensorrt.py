"""TensorRT backend: a prebuilt engine, checked against this TensorRT and GPU, run with execute_async_v3.

What an engine is bound to (``Target``, its optimisation ``Profile``, the sidecar check) lives here, at the
runtime layer, because the backend checks it; the builder in ``stylecast.export.tensorrt_build`` writes it."""

from __future__ import annotations

import functools
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType

import numpy as np

from stylecast.runtime.artifacts import FORMAT_KEY, read_sidecar, require, sidecar_path
from stylecast.runtime.backends.base import Backend, Variant, check_inputs
from stylecast.runtime.backends.cuda_device import CudaDevice, open_device
from stylecast.runtime.errors import StylecastError, import_optional
from stylecast.runtime.formats import ENGINE_FORMAT, BackendOptions

Shape = tuple[int, int, int, int]
# `stylecast build-engine`'s default profile (--min/--opt/--max): square ends, so portrait and landscape photos
# fit alike, and a 1024 px side that a Jetson's memory builds comfortably.
ENGINE_PROFILE = {"min": "1x3x64x64", "opt": "1x3x512x512", "max": "4x3x1024x1024"}


def parse_shape(text: str) -> Shape:
    """``1x3x256x256`` -> (1, 3, 256, 256): an NCHW image shape with 3 channels."""
    parts = text.lower().replace(" ", "").split("x")
    if len(parts) != 4 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise StylecastError(f"shape '{text}': expected NxCxHxW with positive integers, e.g. 1x3x512x512")
    shape = tuple(int(p) for p in parts)
    if shape[1] != 3:
        raise StylecastError(f"shape '{text}': stylecast models take 3 (RGB) channels, not {shape[1]}")
    return shape  # type: ignore[return-value]


@dataclass(frozen=True)
class Profile:
    """One TensorRT optimization profile for the image input: every dim min <= opt <= max."""

    min: Shape
    opt: Shape
    max: Shape

    @classmethod
    def parse(cls, min_text: str, opt_text: str, max_text: str) -> Profile:
        profile = cls(parse_shape(min_text), parse_shape(opt_text), parse_shape(max_text))
        if not all(lo <= mid <= hi for lo, mid, hi in zip(profile.min, profile.opt, profile.max, strict=True)):
            raise StylecastError(f"profile --min {min_text} --opt {opt_text} --max {max_text}: "
                                 "each dimension needs min <= opt <= max")
        return profile

    def contains(self, shape: tuple[int, ...]) -> bool:
        return len(shape) == 4 and all(lo <= s <= hi for lo, s, hi in zip(self.min, shape, self.max, strict=True))

    def as_text(self) -> dict[str, str]:
        return {k: "x".join(map(str, v)) for k, v in asdict(self).items()}


def version_tuple(version: str) -> tuple[int, ...]:
    """'10.13.0.35' -> (10, 13, 0, 35); non-numeric tails (rc, post) are dropped."""
    return tuple(int(m) for m in re.findall(r"\d+", version.split("+")[0])[:4])


@dataclass(frozen=True)
class Target:
    """What an engine is bound to: the TensorRT that built it and the GPU it was built on."""

    trt_version: str
    gpu_name: str
    compute_capability: str  # "8.7"


def check_sidecar(sidecar: dict, running: Target, engine: Path) -> None:
    """Refuse an engine built for another TensorRT or GPU: it would fail or run badly there."""
    rebuild = f"rebuild it here with `stylecast build-engine {sidecar.get('onnx_file', 'MODEL.onnx')}`"
    if sidecar.get(FORMAT_KEY) != ENGINE_FORMAT:
        raise StylecastError(f"{engine}: its sidecar {sidecar_path(engine).name} is not a stylecast engine "
                             f"description; {rebuild}")
    built = Target(str(sidecar.get("tensorrt_version")), str(sidecar.get("gpu_name")),
                   str(sidecar.get("compute_capability")))
    for field, label in (("trt_version", "TensorRT"), ("compute_capability", "compute capability"),
                         ("gpu_name", "GPU")):
        if getattr(built, field) != getattr(running, field):
            raise StylecastError(f"{engine}: built for {label} {getattr(built, field)}, this machine has "
                                 f"{getattr(running, field)}; {rebuild}")


def import_tensorrt() -> ModuleType:
    return import_optional("tensorrt", "TensorRT is not installed: on a Jetson it ships with JetPack; on a GPU server "
                                       "pip install 'stylecast[gpu]'")


@functools.cache
def _logger(trt: ModuleType) -> object:
    return trt.Logger(trt.Logger.WARNING)


def trt_logger(trt: ModuleType, verbose: bool = False) -> object:
    """The process's one ``trt.Logger``: TensorRT warns when a second one is registered (builder and backend
    used to make their own); ``verbose`` lowers its threshold for a build log."""
    logger = _logger(trt)
    if verbose:
        logger.min_severity = trt.Logger.VERBOSE
    return logger


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
    requires = "tensorrt"

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.sidecar = read_sidecar(self.path)
        require({k: str(v) for k, v in self.sidecar.items()}, ENGINE_FORMAT, self.path)
        trt = import_tensorrt()
        self.device = open_device()
        check_sidecar(self.sidecar, running_target(trt, self.device), self.path)
        self.logger = trt_logger(trt)
        self.runtime = trt.Runtime(self.logger)
        self.engine = self.runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self.engine is None:
            raise StylecastError(f"{self.path}: TensorRT could not deserialize it; rebuild it here with "
                                 f"`stylecast build-engine {self.sidecar.get('onnx_file', 'MODEL.onnx')}`")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if n not in inputs]
        if len(outputs) != 1:
            raise StylecastError(f"{self.path}: expected one output tensor, found {names}")
        self.inputs = check_inputs(self.path, [(n, len(self.engine.get_tensor_shape(n))) for n in inputs])
        self.output_name = outputs[0]
        for tensor in names:  # run() hands TensorRT float32 buffers: an engine with other I/O would read garbage
            if self.engine.get_tensor_dtype(tensor) != trt.float32:
                raise StylecastError(f"{self.path}: tensor '{tensor}' is {self.engine.get_tensor_dtype(tensor)}, "
                                     "stylecast engines take and give float32; rebuild it from an ONNX written by "
                                     "`stylecast export`")
        self.profile = Profile(*(tuple(s) for s in self.engine.get_tensor_profile_shape(self.inputs[0], 0)))
        self._buffers: dict[str, tuple[int, np.ndarray]] = {}

    @classmethod
    def variants(cls, path: Path, precision: str, options: BackendOptions) -> list[Variant]:
        return [Variant("engine", precision, options)]

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

    def run(self, batch: np.ndarray, stats: np.ndarray | None = None,
            style: np.ndarray | None = None) -> np.ndarray:
        feeds = self.feeds(batch, stats, style)
        check_shape(feeds[0].shape, self.profile, self.path)
        for name, array in zip(self.inputs, feeds, strict=True):
            self.context.set_input_shape(name, array.shape)
            pointer, host = self._buffer(name, array.size)
            host[:array.size] = array.ravel()
            self.device.to_device(pointer, host[:array.size])
            self.context.set_tensor_address(name, pointer)
        out_shape = tuple(self.context.get_tensor_shape(self.output_name))
        out_ptr, out_host = self._buffer(self.output_name, int(np.prod(out_shape)))
        self.context.set_tensor_address(self.output_name, out_ptr)
        if not self.context.execute_async_v3(self.device.stream_handle):
            raise StylecastError(f"{self.path}: TensorRT execution failed (see its log above)")
        result = out_host[:int(np.prod(out_shape))]
        self.device.to_host(result, out_ptr)
        self.device.synchronize()
        return result.reshape(out_shape).copy()

    def max_shape(self) -> tuple[int, int, int, int]:
        return self.profile.max

    def bind_thread(self) -> None:
        self.device.bind_thread()

    def release_thread(self) -> None:
        self.device.release_thread()

    def describe(self) -> str:
        return f"tensorrt {self.sidecar.get('tensorrt_version')} {self.sidecar.get('precision')}"

    def close(self) -> None:
        """Free the buffers, then the TensorRT objects, then the stream/context they ran on (in that order); once."""
        if self.engine is None:
            return
        for pointer, host in self._buffers.values():
            self.device.free(pointer)
            self.device.free(host.ctypes.data)
        self._buffers.clear()
        self.context = self.engine = None
        self.device.close()

    def __del__(self) -> None:
        if hasattr(self, "_buffers"):
            self.close()
