"""The small interface every runtime format implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np


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
