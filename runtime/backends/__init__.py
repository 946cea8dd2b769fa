"""The runtime's backends, one class per engine behind ``Backend``, chosen from the format table by file type.
A backend's module is imported only when a file is opened with it, so the runtime needs only the engine it uses."""

from __future__ import annotations

import importlib
from dataclasses import replace
from pathlib import Path

from stylecast.runtime.backends.base import Backend, Stages, Variant
from stylecast.runtime.errors import StylecastError
from stylecast.runtime.formats import BACKENDS, FILE_KINDS, BackendOptions, kind_of

__all__ = ["Backend", "Stages", "Variant", "backend_class", "backend_names", "load_backend"]


def backend_class(name: str) -> type[Backend]:
    """The class of the table's backend ``name``, imported now."""
    if name not in BACKENDS:
        raise StylecastError(f"unknown backend {name!r}; choose auto or one of: {', '.join(BACKENDS)}")
    module, attribute = BACKENDS[name].target.split(":")
    return getattr(importlib.import_module(module), attribute)


def backend_names(path: Path) -> tuple[str, ...]:
    """The backends that run ``path``'s file kind, the default first."""
    kind = kind_of(Path(path).suffix)
    return kind.backends if kind is not None else ()


def load_backend(path: Path, options: BackendOptions | None = None, **settings: object) -> Backend:
    """Open ``path`` with the backend its type calls for (``options.backend`` may choose another that runs it);
    ``settings`` are BackendOptions fields over ``options`` (``load_backend(path, threads=2)``)."""
    path, options = Path(path), replace(options or BackendOptions(), **settings)
    if not path.is_file():
        raise StylecastError(f"{path}: model not found; run `make export` or pass --model PATH")
    names = backend_names(path)
    if options.backend != "auto" and options.backend not in BACKENDS:
        raise StylecastError(f"--backend {options.backend}: unknown; choose auto or one of: {', '.join(BACKENDS)}")
    chosen = names[0] if names and options.backend == "auto" else options.backend if options.backend in names else None
    if chosen is None:
        runs = ", ".join(f"{b}: {' '.join(k.suffixes)}" for k in FILE_KINDS.values() for b in k.backends)
        raise StylecastError(f"{path}: no backend for '{path.suffix}' files with --backend {options.backend} "
                             f"({runs}); give a model exported by `stylecast export` or an engine built by "
                             "`stylecast build-engine`")
    return backend_class(chosen).open(path, options)

