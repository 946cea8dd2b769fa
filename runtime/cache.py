"""Where stylecast keeps downloaded weights and engine caches."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """``$STYLECAST_CACHE``, else ``$XDG_CACHE_HOME/stylecast``, else ``~/.cache/stylecast``."""
    if os.environ.get("STYLECAST_CACHE"):
        return Path(os.environ["STYLECAST_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "stylecast"
