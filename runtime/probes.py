"""Speed verdicts measured once per machine class and cached with its fingerprint.

A CPU flag says that a kernel exists, not that it is fast (bf16 is faster than fp32 on one x86 CPU and
slower on the next), so "is mode X faster here" is measured by a short probe. Training (torch bf16
autocast) and the OpenVINO backend (its inference precision hint) keep their verdicts in one file,
each under its own key, so a probe runs once per machine class, thread count and library version.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from stylecast.runtime.cache import cache_dir
from stylecast.runtime.images import atomic_write

# A reduced precision must take under this fraction of fp32's time: a 5% "win" is within a probe's noise.
FASTER_BELOW = 0.9


def probe_file() -> Path:
    return cache_dir() / "precision-probe.json"


def cached_probe(key: str, version: int, measure: Callable[[], dict],
                 fingerprint: Callable[[], dict | None] = lambda: None) -> tuple[dict, bool]:
    """The entry stored under ``key`` by this probe ``version``, or ``measure()``'s, stored with the
    machine's fingerprint; and whether it came from the cache."""
    path = probe_file()
    try:
        stored = json.loads(path.read_text())
    except (OSError, ValueError):
        stored = {}
    stored = stored if isinstance(stored, dict) else {}
    entry = stored.get(key)
    if isinstance(entry, dict) and entry.get("probe_version") == version:
        return entry, True
    entry = {**measure(), "probe_version": version, "fingerprint": fingerprint()}
    stored[key] = entry
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(stored, indent=2) + "\n"))
    return entry, False
