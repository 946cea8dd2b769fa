"""The runtime's backends, one class per format behind ``Backend``, and the choice of one by file type
(from the format table). A backend's module is imported only when a file of its kind is opened, so the
runtime needs only the engine it uses."""

from __future__ import annotations

from pathlib import Path

from stylecast.runtime.backends.base import Backend
from stylecast.runtime.errors import StylecastError
from stylecast.runtime.formats import kind_of


def load_backend(path: Path, backend: str = "auto", providers: list[str] | None = None,
                 threads: int | None = None, openvino_precision: str = "f32") -> Backend:
    """Open ``path`` with the backend its type calls for (``backend`` may choose another that runs it).

    With OpenVINO, ``providers`` names its device (CPU, GPU, NPU, AUTO) and ``openvino_precision`` its CPU
    inference precision (f32, bf16 or auto); with ONNX Runtime, ``providers`` are its providers."""
    path = Path(path)
    if not path.is_file():
        raise StylecastError(f"{path}: model not found; run `make export` or pass --model PATH")
    kind = kind_of(path.suffix)
    backends = kind.backends if kind is not None else ()
    chosen = backends[0] if backends and backend == "auto" else backend if backend in backends else None
    if chosen == "onnxruntime":
        from stylecast.runtime.backends.onnxruntime import OnnxRuntimeBackend

        return OnnxRuntimeBackend(path, providers=providers, threads=threads)
    if chosen == "tensorrt":
        from stylecast.runtime.backends.tensorrt import TensorRTBackend

        return TensorRTBackend(path)
    if chosen == "openvino":
        from stylecast.runtime.backends.openvino import OpenVinoBackend

        return OpenVinoBackend(path, device=providers[0] if providers else "CPU", threads=threads,
                               precision=openvino_precision)
    raise StylecastError(f"{path}: no backend for '{path.suffix}' files with --backend {backend}; "
                         "give an .onnx model exported by `stylecast export` "
                         "or an .engine built by `stylecast build-engine`")
