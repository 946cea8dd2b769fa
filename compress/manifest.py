"""Stage manifests: what a pipeline stage read, with which settings, and what it wrote.

A re-run skips a stage whose manifest matches its current inputs (by sha256) and settings and whose
outputs are still intact, so a long pipeline can be interrupted and continued in a later session.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from stylecast.runtime.artifacts import sha256_file, tool_versions
from stylecast.runtime.images import atomic_write

MANIFEST = "manifest.json"


def _files(paths: dict[str, Path]) -> dict[str, dict[str, str]]:
    return {name: {"path": str(p), "sha256": sha256_file(p)} for name, p in sorted(paths.items())}


def completed(stage_dir: Path, inputs: dict[str, Path], settings: dict) -> dict | None:
    """The stage's manifest if it finished with these exact inputs and settings, else None."""
    path = stage_dir / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
    except ValueError:
        return None
    if manifest.get("inputs") != _files(inputs) or manifest.get("settings") != json.loads(json.dumps(settings)):
        return None
    for entry in manifest.get("outputs", {}).values():
        if not Path(entry["path"]).is_file() or sha256_file(Path(entry["path"])) != entry["sha256"]:
            return None
    return manifest


def record(stage_dir: Path, stage: str, inputs: dict[str, Path], settings: dict, outputs: dict[str, Path],
           results: dict | None = None) -> dict:
    """Write the manifest last, so a stage killed half-way never looks finished."""
    manifest = {"stage": stage, "inputs": _files(inputs), "settings": json.loads(json.dumps(settings)),
                "outputs": _files(outputs), "results": results or {},
                "versions": json.loads(tool_versions("torch", "onnxruntime", "torch-pruning")),
                "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    stage_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(stage_dir / MANIFEST, lambda tmp: tmp.write_text(json.dumps(manifest, indent=2) + "\n"))
    return manifest
