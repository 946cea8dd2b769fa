"""What exists to benchmark: model variants and their exported files, of every file kind the format table runs.

Nothing is configured by hand, so a new precision, student or file kind shows up by itself.
Each exported file is matched to its checkpoint by its metadata (``source_checkpoint``), and
refused when its ``source_sha256`` says it came from an older version of that checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from stylecast.runtime.artifacts import onnx_metadata, read_metadata, require, sha256_file
from stylecast.runtime.errors import StylecastError
from stylecast.runtime.formats import FILE_KINDS, ONNX, kind_of


@dataclass
class Artifact:
    """An exported file of one variant; ``status`` is "ok" or why it cannot be benchmarked."""

    path: Path
    kind: str  # its row of FILE_KINDS
    precision: str
    status: str = "ok"


def checkpoints(sources: list[Path]) -> list[Path]:
    """Files as given, folders expanded to their ``*.safetensors``; each one is a model variant."""
    found: list[Path] = []
    for source in sources:
        if source.is_dir():
            found += sorted(source.glob("*.safetensors"))
        elif source.is_file():
            found.append(source)
        else:
            raise StylecastError(f"{source}: no such checkpoint or folder; pass --models PATH")
    if not found:
        raise StylecastError(f"no checkpoints (*.safetensors) in {', '.join(map(str, sources))}; "
                             "train one (make train) or pass --models PATH")
    return list(dict.fromkeys(found))


def exported(checkpoint: Path, artifacts: Path, precision: str = "int8") -> Path:
    """The model's shipped ONNX export of ``precision`` (``artifacts/<stem>/<stem>.<precision>.onnx``), refused if it
    was made from other weights."""
    path = artifacts / checkpoint.stem / f"{checkpoint.stem}.{precision}.onnx"
    if not path.is_file():
        raise StylecastError(f"{path}: no {precision} export; run `make export STYLE={checkpoint.stem}` first")
    if onnx_metadata(path).get("source_sha256") != sha256_file(checkpoint):
        raise StylecastError(f"{path}: exported from other weights than {checkpoint}; "
                             f"run `make export STYLE={checkpoint.stem}` again")
    return path


def _describe(path: Path, kind: str) -> tuple[dict[str, str], str]:
    """The file's metadata and "ok", or empty metadata and the reason it is unusable."""
    try:
        meta = read_metadata(path)
        require(meta, kind, path)
        return meta, "ok"
    except StylecastError as exc:
        return {}, f"error: {exc}"


def _source_name(meta: dict[str, str], path: Path) -> str:
    """The checkpoint file an artifact came from; an engine names its ONNX, which names the checkpoint."""
    if "onnx_file" in meta:
        onnx = path.parent / meta["onnx_file"]
        return _describe(onnx, ONNX)[0].get("source_checkpoint", "") if onnx.is_file() else ""
    return meta.get("source_checkpoint", "")


def artifacts_for(checkpoint: Path, artifacts: Path) -> tuple[list[Artifact], list[str]]:
    """This checkpoint's exported files under ``artifacts/*/`` (each file kind some backend runs, in the table's
    order), and the foreign files seen (for the log).

    A file belongs to the checkpoint when its metadata names it; an unreadable file belongs to it
    when it sits in ``artifacts/<checkpoint stem>/``.
    """
    digest = sha256_file(checkpoint)
    mine: list[Artifact] = []
    foreign: list[str] = []
    candidates = sorted(artifacts.glob("*/*"))
    files = [(p, kind.name) for kind in FILE_KINDS.values() if kind.backends
             for p in candidates if p.is_file() and kind_of(p.suffix) is kind]
    for path, kind in files:
        meta, status = _describe(path, kind)
        precision = meta.get("precision") or path.stem.rsplit(".", 1)[-1]
        unreadable_here = status != "ok" and path.parent.name == checkpoint.stem
        if _source_name(meta, path) != checkpoint.name and not unreadable_here:
            foreign.append(str(path))
            continue
        if status == "ok" and meta.get("source_sha256") != digest:
            status = (f"refused: {path} was exported from another {checkpoint.name} "
                      f"(sha256 {meta.get('source_sha256', '?')[:12]}…); re-run stylecast export")
        mine.append(Artifact(path, kind, precision, status))
    return mine, foreign
