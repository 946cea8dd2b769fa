"""Read the metadata of any stylecast artefact without torch or onnx installed."""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path

from stylecast.runtime.errors import StylecastError


def safetensors_metadata(path: Path) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors header (8-byte length + JSON), read directly."""
    try:
        with open(path, "rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            if length > 100_000_000:
                raise ValueError("header too large")
            header = json.loads(handle.read(length))
    except (OSError, struct.error, ValueError, UnicodeDecodeError) as exc:
        raise StylecastError(f"{path}: not a readable safetensors file ({exc})") from exc
    meta = header.get("__metadata__", {}) if isinstance(header, dict) else None
    if not isinstance(meta, dict):
        raise StylecastError(f"{path}: not a safetensors file with a metadata table; re-create it with stylecast")
    return {str(k): str(v) for k, v in meta.items()}


def onnx_metadata(path: Path) -> dict[str, str]:
    from stylecast.runtime.backends.onnxruntime import import_ort

    ort = import_ort()
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT's errors are untyped
        raise StylecastError(f"{path}: not a loadable ONNX model ({str(exc).splitlines()[0]})") from exc
    return dict(session.get_modelmeta().custom_metadata_map)


def read_metadata(path: Path) -> dict[str, str]:
    """Metadata of a checkpoint, ONNX model, engine (its JSON sidecar) or JSON report."""
    path = Path(path)
    if not path.is_file():
        raise StylecastError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        return safetensors_metadata(path)
    if suffix == ".onnx":
        return onnx_metadata(path)
    if suffix in (".engine", ".plan"):
        path = path.with_suffix(path.suffix + ".json")
        suffix = ".json"
    if suffix == ".json":
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise StylecastError(f"{path}: not readable JSON ({exc})") from exc
        if not isinstance(data, dict):
            raise StylecastError(f"{path}: not a stylecast report (expected a JSON object)")
        return {k: v if isinstance(v, str) else json.dumps(v) for k, v in data.items()}
    raise StylecastError(f"{path}: unknown artefact type; expected .safetensors, .onnx, .engine or .json")


def slug(text: str) -> str:
    """A GPU name as a file-name part: 'NVIDIA Jetson AGX Orin' -> 'nvidia-jetson-agx-orin'."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "gpu"


def sidecar_path(engine: Path) -> Path:
    return Path(engine).with_suffix(Path(engine).suffix + ".json")


def read_sidecar(engine: Path) -> dict:
    side = sidecar_path(engine)
    try:
        return json.loads(side.read_text())
    except FileNotFoundError as exc:
        raise StylecastError(f"{engine}: no sidecar {side.name}; rebuild the engine with `stylecast build-engine`") from exc
    except (OSError, ValueError) as exc:
        raise StylecastError(f"{side}: unreadable engine sidecar ({exc}); rebuild with `stylecast build-engine`") from exc
