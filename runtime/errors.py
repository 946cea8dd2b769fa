"""Errors a user can act on: the CLI prints their message as one line and exits non-zero."""

import importlib
from types import ModuleType


class StylecastError(Exception):
    """A problem with the user's input, files or environment; the message names the fix."""

    exit_code = 2


class TooLarge(StylecastError):
    """An input above a size limit (bytes or pixels, decompression bombs included): a server answers 413."""


class Interrupted(StylecastError):
    """The user pressed Ctrl-C; whatever was safe to keep has been kept."""

    exit_code = 130


def import_optional(module: str, missing: str) -> ModuleType:
    """Import an optional dependency (a backend), or fail with ``missing``: how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise StylecastError(missing) from exc
