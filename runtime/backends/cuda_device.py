"""The few CUDA calls the TensorRT backend needs, via cuda-python or pycuda, whichever is installed.

TensorRT's own samples moved to cuda-python; JetPack images often ship pycuda instead. Both expose
the same five things here: device name and compute capability, a stream, device memory, pinned
host memory and async copies.
"""

from __future__ import annotations

import atexit
import ctypes
from pathlib import Path
from typing import Protocol

import numpy as np

from stylecast.runtime.errors import StylecastError

# Every Jetson Orin module reports the GPU name "Orin" (AGX, NX and Nano alike); the device tree names the module.
# (NVIDIA Jetson Linux Developer Guide: `cat /proc/device-tree/model`.)
DEVICE_TREE_MODEL = Path("/proc/device-tree/model")


def gpu_identity(name: str, model_file: Path = DEVICE_TREE_MODEL) -> str:
    """The GPU name, with the Jetson module appended where the device tree names one, so engines built on an
    AGX Orin are told apart from a Nano's (same GPU name and compute capability, other SM count and clocks)."""
    try:
        model = model_file.read_bytes().decode(errors="replace").strip("\x00 \n")
    except OSError:
        return name
    return f"{name} ({model})" if "jetson" in model.lower() else name


class CudaDevice(Protocol):
    stream_handle: int

    def describe(self) -> tuple[str, str]:
        """(GPU name, compute capability as 'major.minor') of device 0."""

    def malloc(self, nbytes: int) -> int: ...

    def free(self, pointer: int) -> None: ...

    def pinned(self, count: int) -> np.ndarray:
        """A float32 host array in page-locked memory (fast, truly async copies)."""

    def to_device(self, pointer: int, host: np.ndarray) -> None: ...

    def to_host(self, host: np.ndarray, pointer: int) -> None: ...

    def synchronize(self) -> None: ...

    def bind_thread(self) -> None:
        """Make the device's context current on the calling thread (CUDA contexts are per thread)."""

    def release_thread(self) -> None:
        """Undo ``bind_thread`` on the calling thread before it ends."""

    def close(self) -> None:
        """Release the stream (and pycuda's context) after every allocation is freed; safe to call twice."""


class CudaPython:
    """cuda-python's runtime bindings (``cuda.bindings.runtime``, formerly ``cuda.cudart``)."""

    def __init__(self, cudart) -> None:  # noqa: ANN001 - the bindings module
        self.rt = cudart
        self._check(cudart.cudaSetDevice(0))
        self.stream = self._check(cudart.cudaStreamCreate())
        self.stream_handle = int(self.stream)
        self._host: dict[int, int] = {}

    def _check(self, result: tuple):  # noqa: ANN202 - the call's payload
        err, *rest = result
        if err != self.rt.cudaError_t.cudaSuccess:
            raise StylecastError(f"CUDA call failed: {self.rt.cudaGetErrorString(err)[1].decode()}")
        return rest[0] if len(rest) == 1 else rest

    def bind_thread(self) -> None:
        self._check(self.rt.cudaSetDevice(0))  # the runtime API then uses the primary context on this thread

    def release_thread(self) -> None:
        """The runtime API keeps nothing per thread to undo."""

    def describe(self) -> tuple[str, str]:
        prop = self._check(self.rt.cudaGetDeviceProperties(0))
        name = prop.name.decode() if isinstance(prop.name, bytes) else str(prop.name)
        return gpu_identity(name.rstrip("\x00")), f"{prop.major}.{prop.minor}"

    def malloc(self, nbytes: int) -> int:
        return int(self._check(self.rt.cudaMalloc(nbytes)))

    def free(self, pointer: int) -> None:
        if pointer in self._host:
            self._check(self.rt.cudaFreeHost(self._host.pop(pointer)))
        else:
            self._check(self.rt.cudaFree(pointer))

    def pinned(self, count: int) -> np.ndarray:
        address = int(self._check(self.rt.cudaMallocHost(count * 4)))
        array = np.ctypeslib.as_array(ctypes.cast(address, ctypes.POINTER(ctypes.c_float)), (count,))
        self._host[array.ctypes.data] = address
        return array

    def to_device(self, pointer: int, host: np.ndarray) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._check(self.rt.cudaMemcpyAsync(pointer, host.ctypes.data, host.nbytes, kind, self.stream))

    def to_host(self, host: np.ndarray, pointer: int) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._check(self.rt.cudaMemcpyAsync(host.ctypes.data, pointer, host.nbytes, kind, self.stream))

    def synchronize(self) -> None:
        self._check(self.rt.cudaStreamSynchronize(self.stream))

    def close(self) -> None:
        if self.stream is not None:
            for address in list(self._host.values()):
                self._check(self.rt.cudaFreeHost(address))
            self._host.clear()
            self._check(self.rt.cudaStreamDestroy(self.stream))
            self.stream = None


class PyCuda:
    """pycuda's driver API on the device's primary context (what JetPack images often carry)."""

    def __init__(self, driver) -> None:  # noqa: ANN001 - pycuda.driver
        self.cuda = driver
        driver.init()
        self.device = driver.Device(0)
        self.context = self.device.retain_primary_context()
        self.context.push()
        # pycuda aborts at exit if a pushed context is still on the stack; close() pops it after the frees.
        atexit.register(self.close)
        self.stream = driver.Stream()
        self.stream_handle = int(self.stream.handle)
        self._allocations: dict[int, object] = {}

    def describe(self) -> tuple[str, str]:
        major, minor = self.device.compute_capability()
        return gpu_identity(self.device.name()), f"{major}.{minor}"

    def malloc(self, nbytes: int) -> int:
        allocation = self.cuda.mem_alloc(nbytes)
        self._allocations[int(allocation)] = allocation
        return int(allocation)

    def free(self, pointer: int) -> None:
        allocation = self._allocations.pop(pointer, None)
        if allocation is not None and hasattr(allocation, "free"):
            allocation.free()

    def pinned(self, count: int) -> np.ndarray:
        array = self.cuda.pagelocked_empty(count, np.float32)
        self._allocations[array.ctypes.data] = array.base  # pycuda's HostAllocation, which has free()
        return array

    def to_device(self, pointer: int, host: np.ndarray) -> None:
        self.cuda.memcpy_htod_async(pointer, host, self.stream)

    def to_host(self, host: np.ndarray, pointer: int) -> None:
        self.cuda.memcpy_dtoh_async(host, pointer, self.stream)

    def synchronize(self) -> None:
        self.stream.synchronize()

    def bind_thread(self) -> None:
        self.context.push()

    def release_thread(self) -> None:
        """Pop what ``bind_thread`` pushed: pycuda aborts at exit while a thread's context stack is not empty."""
        self.context.pop()

    def close(self) -> None:
        """Free what is left while the context is still current, then pop it (the other order crashes pycuda)."""
        if self.context is None:
            return
        for allocation in self._allocations.values():
            if hasattr(allocation, "free"):
                allocation.free()
        self._allocations.clear()
        self.stream = None
        self.context.pop()
        self.context = None
        atexit.unregister(self.close)


def open_device() -> CudaDevice:
    """cuda-python if importable (new and old module paths), else pycuda, else a one-line fix."""
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart
        except ImportError:
            cudart = None
    if cudart is not None:
        return CudaPython(cudart)
    try:
        import pycuda.driver as driver
    except ImportError as exc:
        raise StylecastError("the TensorRT backend needs cuda-python or pycuda: pip install cuda-python "
                             "(JetPack images may already have pycuda)") from exc
    return PyCuda(driver)
