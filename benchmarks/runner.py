"""The interface every benchmarked format implements, so the suite times them all the same way."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class Sample:
    """One timed call. On CUDA the three stages come from GPU events; on CPU only the total exists."""

    total_ms: float
    h2d_ms: float | None = None
    compute_ms: float | None = None
    d2h_ms: float | None = None


class Runner(ABC):
    """One engine running one model at one precision: a row of the benchmark table.

    ``infer`` takes float32 NCHW RGB in [0, 255] (batch 1) and returns float32 NCHW, with its timing.
    Everything a caller would pay per image (layout and dtype conversions, copies) is inside the timing.
    """

    fmt = "format"
    model = ""  # names the model in ``key`` when one timed cell holds several models (the student search)

    def __init__(self, precision: str, engine: str, path: Path | None = None) -> None:
        self.precision, self.engine, self.path = precision, engine, path
        self.load_s = 0.0

    @property
    def key(self) -> str:
        return "/".join(filter(None, (self.model, self.fmt, self.precision, self.engine)))

    @property
    def file_bytes(self) -> int | None:
        return self.path.stat().st_size if self.path else None

    def load(self) -> None:
        """One-off set-up independent of the input shape (sessions, engines); timed into ``load_s``."""
        start = time.perf_counter()
        self._load()
        self.load_s = time.perf_counter() - start

    @abstractmethod
    def _load(self) -> None: ...

    @abstractmethod
    def close(self) -> None:
        """Drop sessions, engines and compiled graphs, so the next model's formats start with the memory free."""

    @abstractmethod
    def infer(self, batch: np.ndarray) -> tuple[np.ndarray, Sample]: ...
