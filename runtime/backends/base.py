"""The one interface every inference engine implements: the runtime stylizes with it, the bench times it, and
export and the bench compare its outputs."""

from __future__ import annotations

import importlib.util
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stylecast.runtime.errors import StylecastError
from stylecast.runtime.formats import BACKENDS, INPUT, STATS, STYLE, BackendOptions
from stylecast.runtime.styles_catalog import model_styles, style_weights


def check_inputs(path: Path, inputs: list[tuple[str, int]]) -> tuple[str, ...]:
    """A model takes one NCHW image first; a multi-style graph also its style weights (N x styles), and a tiled apply
    graph the statistics (N x S) of the whole image. Returns the input names in the model's order."""
    names, ranks = [name for name, _ in inputs], [rank for _, rank in inputs]
    extra = names[1:]
    if ranks[:1] != [4] or set(ranks[1:]) - {2} or set(extra) - {STYLE, STATS} or len(set(extra)) < len(extra):
        raise StylecastError(f"{path}: expected one NCHW image input (and {STYLE} for a multi-style graph, {STATS} for "
                             f"a tiled graph), found {names} of ranks {ranks}; re-export it with `stylecast export`")
    return tuple(names)


@dataclass(frozen=True)
class Stages:
    """One call split into upload, compute and download, where a device engine can time them apart."""

    h2d_ms: float
    compute_ms: float
    d2h_ms: float


@dataclass(frozen=True)
class Variant:
    """One way the bench runs a file on a backend: a row of its table (an execution provider, an inference
    precision). ``status`` says why it cannot run here; None means it can."""

    engine: str
    precision: str
    options: BackendOptions
    status: str | None = None


class Backend(ABC):
    """One model file on one inference engine.

    ``run`` takes float32 NCHW RGB in [0, 255] and returns the same layout, already clamped; a multi-style graph
    also takes the weights of its styles (``style``, one row per image), an apply graph of tiled inference the whole
    image's InstanceNorm statistics (``stats``), and a statistics graph returns them instead of an image. A backend
    is a context manager: leaving it frees its sessions, engines and device memory (``close``).
    """

    name: str = "backend"
    requires: str | None = None  # the Python package the engine comes in
    inputs: tuple[str, ...] = (INPUT,)  # the model's input names, the image first (as check_inputs returns them)

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @classmethod
    def open(cls, path: Path, options: BackendOptions) -> Backend:
        """The backend for ``path`` under the shared options (the registry's one constructor)."""
        return cls(path)

    @classmethod
    def unavailable(cls) -> str | None:
        """Why this engine cannot run on this machine, or None: its package (``requires``) is missing, found
        without importing it (a package that is there but broken fails on opening a file, with its own error)."""
        if cls.requires and importlib.util.find_spec(cls.requires) is None:
            return f"skipped: {BACKENDS[cls.name].label} not installed"
        return None

    @classmethod
    def variants(cls, path: Path, precision: str, options: BackendOptions) -> list[Variant]:
        """The bench's rows for one file: by default one, the file at its own precision."""
        return [Variant("default", precision, options)]

    @property
    @abstractmethod
    def metadata(self) -> dict[str, str]:
        """The artifact's stylecast metadata (style, arch, precision, hashes, versions)."""

    @property
    def styles(self) -> list[str]:
        """The model's styles in the row order of its style input (a single-style model's one style)."""
        return model_styles(self.metadata, str(self.path))

    def specialized(self, style: np.ndarray) -> Backend | None:
        """This file's multi-style graph held to the style vector ``style`` (its weights folded into the
        InstanceNorms, ``runtime.specialize``), opened as a backend of its own that takes no style: what a
        single-style net of that style costs, for runs whose style is fixed. None where there is nothing to fold (a
        graph without a style input) or the engine runs only the graph it was built from: TensorRT engines (plans)
        keep the general graph, so a fixed style costs them the style input's Mul and Add per norm."""
        return None

    @abstractmethod
    def run(self, batch: np.ndarray, stats: np.ndarray | None = None,
            style: np.ndarray | None = None) -> np.ndarray: ...

    def feeds(self, batch: np.ndarray, stats: np.ndarray | None = None,
              style: np.ndarray | None = None) -> list[np.ndarray]:
        """One call's arrays in the order of ``inputs``, float32 and contiguous; one the model does not take, or
        one it needs and is not given, is refused."""
        given = {self.inputs[0]: batch, STATS: stats, STYLE: style}
        named = [name for name, array in given.items() if array is not None]
        if set(named) != set(self.inputs):
            raise StylecastError(f"{self.path}: takes {', '.join(self.inputs)}; given {', '.join(named)}")
        return [np.ascontiguousarray(given[name], np.float32) for name in self.inputs]

    def run_staged(self, batch: np.ndarray) -> tuple[np.ndarray, Stages | None]:
        """``run``, with its stages timed apart where the engine can (device engines); None on the host."""
        return self.run(batch), None

    def warmup(self, shape: tuple[int, ...], calls: int = 1) -> None:
        """Run ``calls`` times on a zero batch of ``shape`` (a multi-style model's first style): kernels chosen,
        memory set up, shapes compiled."""
        batch = np.zeros(shape, np.float32)
        extra = {}
        if STYLE in self.inputs:
            extra["style"] = np.repeat(style_weights(self.styles, {self.styles[0]: 1.0})[None], shape[0], axis=0)
        for _ in range(calls):
            self.run(batch, **extra)

    def details(self) -> dict[str, str]:
        """Settings this engine chose for itself (an inference-precision hint and why), for reports."""
        return {}

    def describe(self) -> str:
        return self.name

    def max_shape(self) -> tuple[int, int, int, int] | None:
        """The largest NCHW input the engine was built for, which a server must tile or split to; None where
        any size runs (memory permitting)."""
        return None

    def bind_thread(self) -> None:  # noqa: B027 - only engines with thread-bound state need it
        """Make the engine usable from the calling thread (a server runs inference on a thread of its own)."""

    def release_thread(self) -> None:  # noqa: B027 - only engines with thread-bound state need it
        """Undo ``bind_thread`` on the calling thread before it ends."""

    def close(self) -> None:  # noqa: B027 - engines that hold nothing beyond Python objects need no close
        """Free what the engine holds; the object is not used afterwards."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
