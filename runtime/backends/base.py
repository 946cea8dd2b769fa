"""The small interface every runtime format implements, and the choice of one by file type."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np

from stylecast.runtime.errors import StylecastError


class Backend(ABC):
    """One model file on one inference engine.

    ``run`` takes float32 NCHW RGB in [0, 255] and returns the same layout, already clamped.
    """

    name: str = "backend"

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @property
    @abstractmethod
    def metadata(self) -> dict[str, str]:
        """The artifact's stylecast metadata (style, arch, precision, hashes, versions)."""

    @abstractmethod
    def run(self, batch: np.ndarray) -> np.ndarray: ...

    def describe(self) -> str:
        return self.name


def load_backend(path: Path, backend: str = "auto", providers: list[str] | None = None,
                 threads: int | None = None) -> Backend:
    """Open ``path`` with the backend its type calls for (``backend`` may force one)."""
    path = Path(path)
    if not path.is_file():
        raise StylecastError(f"{path}: model not found; run `make export` or pass --model PATH")
    suffix = path.suffix.lower()
    if backend in ("auto", "onnxruntime") and suffix == ".onnx":
        from stylecast.runtime.backends.onnxruntime import OnnxRuntimeBackend

        return OnnxRuntimeBackend(path, providers=providers, threads=threads)
    if backend in ("auto", "tensorrt") and suffix in (".engine", ".plan"):
        from stylecast.runtime.backends.tensorrt import TensorRTBackend

        return TensorRTBackend(path)
    raise StylecastError(f"{path}: no backend for '{suffix}' files with --backend {backend}; "
                         "give an .onnx model exported by `stylecast export` "
                         "or an .engine built by `stylecast build-engine`")
