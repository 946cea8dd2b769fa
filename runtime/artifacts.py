"""The metadata of every stylecast artifact, read and written in one place, without torch and without
opening an inference session.

Checkpoints (safetensors header), ONNX models (``metadata_props``), engines and optimised images
(JSON sidecars) and reports (JSON) all carry string key/value pairs with the keys below, and the
checks here refuse stale or mismatched ones with a message that names the fix.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import platform
import re
import struct
from importlib import metadata as importlib_metadata
from pathlib import Path

from stylecast.runtime.errors import StylecastError, import_optional
from stylecast.runtime.formats import FILE_KINDS, kind_of

FORMAT_KEY = "stylecast.format"
REQUIRED = ("style", "arch", "precision")
TEACHER_KEY = "teacher_sha256"  # a distilled student's: the sha256 of the checkpoint it was distilled from


def package_version(name: str) -> str | None:
    try:
        return importlib_metadata.version(name)
    except importlib_metadata.PackageNotFoundError:
        return None


def tool_versions(*names: str) -> str:
    """JSON of the versions that produced an artifact (python plus the named packages)."""
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
    """Refuse an artifact that is not ours or lacks the keys we rely on."""
    if meta.get(FORMAT_KEY) != kind:
        found = meta.get(FORMAT_KEY, "no stylecast metadata")
        raise StylecastError(f"{path}: not a stylecast {kind} ({found}); re-create it with stylecast")
    missing = [k for k in keys if not meta.get(k)]
    if missing:
        raise StylecastError(f"{path}: metadata lacks {missing}; re-create it with this stylecast version")
    check_teacher(meta, kind, path)


def check_teacher(meta: dict[str, str], kind: str, path: Path) -> None:
    """Refuse a distilled student beside a teacher it was not distilled from: its parity and quality figures were
    measured against the old teacher, and the two would paint differently. The teacher is the style's own file
    beside the student (``models/wave.safetensors`` for a checkpoint, the teacher's export of the same precision for
    an ONNX file); a student deployed alone is not judged."""
    want, style = meta.get(TEACHER_KEY), meta.get("style", "")
    if not want or kind not in ("checkpoint", "onnx"):
        return
    teacher = path.with_name(f"{style}.safetensors" if kind == "checkpoint" else f"{style}.{meta.get('precision')}.onnx")
    if teacher.resolve() == path.resolve() or not teacher.is_file():
        return
    found = sha256_file(teacher) if kind == "checkpoint" else onnx_metadata(teacher).get("source_sha256", "")
    if found != want:
        raise StylecastError(f"{path}: distilled from another {style} teacher than {teacher} (sha256 {want[:12]}, "
                             f"now {found[:12] or 'unknown'}); distil it again from this one with `make ship "
                             f"STYLE={style}`")


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
    """An ONNX file's ``metadata_props``, parsed with the onnx package: no inference session is opened,
    so reading metadata costs no kernel set-up and needs no execution provider (a Jetson's build-engine)."""
    onnx = import_optional("onnx", "reading ONNX metadata needs the onnx package: pip install 'stylecast[cpu]' "
                                   "(or pip install onnx)")
    try:
        model = onnx.load(str(path), load_external_data=False)
        if not model.ir_version or not model.graph.node:  # bytes that happen to parse as an empty message
            raise ValueError("no graph")
    except Exception as exc:  # protobuf's DecodeError and friends share no base class worth naming
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise StylecastError(f"{path}: not a loadable ONNX model ({reason}); re-export it with `stylecast export`") from exc
    return {p.key: p.value for p in model.metadata_props}


def read_json(path: Path, what: str = "stylecast report") -> dict:
    """A JSON object from ``path`` (reports, sidecars), or one line saying why it is not one."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise StylecastError(f"{path}: not readable JSON ({exc}); re-create the {what}") from exc
    if not isinstance(data, dict):
        raise StylecastError(f"{path}: not a {what} (expected a JSON object)")
    return data


def as_strings(data: dict) -> dict[str, str]:
    """JSON values as the string pairs every artifact's metadata is read as."""
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in data.items()}


def sidecar_metadata(path: Path) -> dict[str, str]:
    """A file whose metadata lives in its JSON sidecar (an engine plan)."""
    return as_strings(read_sidecar(path))


def read_metadata(path: Path) -> dict[str, str]:
    """Metadata of any artifact in the format table (read as its row says) or of a JSON report, as string pairs."""
    path = Path(path)
    if not path.is_file():
        raise StylecastError(f"{path}: no such file")
    kind = kind_of(path.suffix)
    if kind is not None:
        module, function = kind.metadata.split(":")
        return getattr(importlib.import_module(module), function)(path)
    if path.suffix.lower() == ".json":
        return as_strings(read_json(path))
    known = " ".join(s for k in FILE_KINDS.values() for s in k.suffixes)
    raise StylecastError(f"{path}: unknown artifact type; expected one of {known} .json")


def slug(text: str) -> str:
    """A name as a file-name part: 'NVIDIA Jetson AGX Orin' -> 'nvidia-jetson-agx-orin'."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "unnamed"


def sidecar_path(artifact: Path) -> Path:
    """``x.engine`` -> ``x.engine.json``, ``x.png`` -> ``x.png.json``: the JSON metadata beside a file that has
    no room for its own (an engine plan, an optimised image)."""
    return Path(artifact).with_name(Path(artifact).name + ".json")


def read_sidecar(engine: Path) -> dict:
    """An engine's JSON sidecar, as written (its values keep their JSON types)."""
    side = sidecar_path(engine)
    if not side.is_file():
        raise StylecastError(f"{engine}: no sidecar {side.name}; rebuild the engine with `stylecast build-engine`")
    return read_json(side, "engine sidecar (rebuild with `stylecast build-engine`)")
