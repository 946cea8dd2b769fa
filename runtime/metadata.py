"""Metadata every artefact carries, and the checks that refuse stale or mismatched ones.

Checkpoints (safetensors metadata), ONNX models (``metadata_props``), engines (JSON sidecars)
and benchmark results all hold string key/value pairs with the keys below.
"""

from __future__ import annotations

import hashlib
import json
import platform
from importlib import metadata as importlib_metadata
from pathlib import Path

from stylecast.runtime.errors import StylecastError

FORMAT_KEY = "stylecast.format"
REQUIRED = ("style", "arch", "precision")


def package_version(name: str) -> str | None:
    try:
        return importlib_metadata.version(name)
    except importlib_metadata.PackageNotFoundError:
        return None


def tool_versions(*names: str) -> str:
    """JSON of the versions that produced an artefact (python plus the named packages)."""
    found = {"python": platform.python_version(), "stylecast": package_version("stylecast")}
    for name in names:
        found[name] = package_version(name)
    return json.dumps(found, sort_keys=True)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def require(meta: dict[str, str], kind: str, path: Path, keys: tuple[str, ...] = REQUIRED) -> None:
    """Refuse an artefact that is not ours or lacks the keys we rely on."""
    if meta.get(FORMAT_KEY) != kind:
        found = meta.get(FORMAT_KEY, "no stylecast metadata")
        raise StylecastError(f"{path}: not a stylecast {kind} ({found}); re-create it with stylecast")
    missing = [k for k in keys if not meta.get(k)]
    if missing:
        raise StylecastError(f"{path}: metadata lacks {missing}; re-create it with this stylecast version")
