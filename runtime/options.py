"""Helpers every command module shares: the one size convention, and the one-line answer when a role's
extra is missing. Torch-free, so the runtime's own commands can use them."""

from __future__ import annotations

import importlib.util
from typing import NamedTuple

from stylecast.runtime.errors import StylecastError

NAMED_SIZES = {"720p": (1280, 720), "1080p": (1920, 1080), "4k": (3840, 2160)}


class Size(NamedTuple):
    width: int
    height: int

    @property
    def label(self) -> str:
        return f"{self.width}x{self.height}"


def parse_size(text: str, flag: str, minimum: int = 16) -> Size:
    """``WIDTHxHEIGHT`` (as screens and ffmpeg say it), a side for a square (``256``), or 720p/1080p/4k."""
    cleaned = text.strip().lower()
    if cleaned in NAMED_SIZES:
        return Size(*NAMED_SIZES[cleaned])
    width, _, height = cleaned.partition("x")
    if not width.isdigit() or not (height or width).isdigit() or min(int(width), int(height or width)) < minimum:
        raise StylecastError(f"{flag} {text}: expected WIDTHxHEIGHT (each at least {minimum}), a side such as 256, "
                             f"or one of {', '.join(NAMED_SIZES)}")
    return Size(int(width), int(height or width))


def need_torch(extra: str = "train") -> None:
    """A one-line answer instead of an ImportError when a role's extra is missing (found without importing it)."""
    try:
        found = importlib.util.find_spec("torch")
    except ImportError:  # an import hook that refuses torch
        found = None
    if found is None:
        raise StylecastError(f"this command needs PyTorch: pip install 'stylecast[{extra}]' "
                             "(on CPU-only machines install torch's CPU build first)")
