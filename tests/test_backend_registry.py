"""The format table is the registry: a backend is one module plus one row. A throwaway backend, registered at run
time and written to a scratch folder (no project file edited), shows up in `stylecast stylize --backend`,
`stylecast info`, the server's /v1/styles and the bench's rows; and the engine names stay where the table puts
them."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent

# A numpy engine that gives its input back: enough to see every layer route a file to it.
TOY_BACKEND = '''
import numpy as np

from stylecast.runtime.artifacts import onnx_metadata, require
from stylecast.runtime.backends.base import Backend


class ToyBackend(Backend):
    name = "toy"

    def __init__(self, path):
        super().__init__(path)
        self._meta = onnx_metadata(self.path)
        require(self._meta, "onnx", self.path)

    @property
    def metadata(self):
        return self._meta

    def run(self, batch):
        return np.clip(np.asarray(batch, np.float32), 0, 255)

    def describe(self):
        return "toy numpy engine"
'''

# Registers the row, then runs what argv asks: the real CLI, or the server app's /v1/styles in-process.
LAUNCHER = '''
import dataclasses, json, sys
from pathlib import Path

from stylecast.runtime import formats

formats.register(
    backend=formats.BackendRow("toy", "toy_backend:ToyBackend", "Toy", "Toy", "a throwaway numpy engine", "cpu"),
    kind=dataclasses.replace(formats.FILE_KINDS["onnx"], backends=(*formats.FILE_KINDS["onnx"].backends, "toy")),
)
if sys.argv[1] == "styles":
    from starlette.testclient import TestClient

    from stylecast.serve.app import Settings, create_app
    from stylecast.serve.models import ModelSet

    models = ModelSet([Path(sys.argv[2])], Path(sys.argv[3]), formats.BackendOptions(backend="toy"))
    with TestClient(create_app(models, Settings())) as client:
        print(json.dumps(client.get("/v1/styles").json()))
else:
    from stylecast.cli import main

    sys.argv = ["stylecast", *sys.argv[1:]]
    main()
'''


@pytest.fixture(scope="module")
def plugin(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("plugin")
    (folder / "toy_backend.py").write_text(textwrap.dedent(TOY_BACKEND))
    (folder / "launch.py").write_text(textwrap.dedent(LAUNCHER))
    return folder


def _run(plugin: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(plugin / "launch.py"), *args], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(plugin), "COLUMNS": "200"}, timeout=600)


def test_a_registered_backend_reaches_stylize_info_serve_and_bench(plugin, tiny_checkpoint, tiny_onnx, photos,
                                                                   tmp_path):
    helped = _run(plugin, "stylize", "--help")
    assert helped.returncode == 0, helped.stderr
    assert "toy (a throwaway numpy engine)" in re.sub(r"[\s│]+", " ", helped.stdout)

    source = tmp_path / "in.png"
    Image.open(photos / "chelsea.jpg").convert("RGB").resize((64, 48)).save(source)
    done = _run(plugin, "stylize", str(source), "--model", str(tiny_onnx), "--backend", "toy",
                "--out", str(tmp_path / "out.png"))
    assert done.returncode == 0, done.stderr
    assert "toy numpy engine" in done.stderr  # the progress line names the backend that ran
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out.png")), np.asarray(Image.open(source)))

    info = _run(plugin, "info")
    assert info.returncode == 0, info.stderr
    assert re.search(r"onnx\s+\.onnx\s+onnxruntime, openvino, toy", info.stdout)
    assert re.search(r"toy\s+Toy\s+a throwaway numpy engine\s+installed", info.stdout)

    (tmp_path / "styles").mkdir()
    styles = _run(plugin, "styles", str(tiny_onnx), str(tmp_path / "styles"))
    assert styles.returncode == 0, styles.stderr
    assert [s["backend"] for s in json.loads(styles.stdout.strip().splitlines()[-1])] == ["toy numpy engine"]

    models, artifacts = tmp_path / "models", tmp_path / "artifacts" / "tiny"
    models.mkdir()
    artifacts.mkdir(parents=True)
    (models / "tiny.safetensors").write_bytes(tiny_checkpoint.read_bytes())
    (artifacts / "tiny.fp32.onnx").write_bytes(tiny_onnx.read_bytes())
    bench = _run(plugin, "bench", "--models", str(models), "--artifacts", str(tmp_path / "artifacts"), "--quick",
                 "--resolution", "64", "--budget", "0.5", "--threads", "1", "--photos", str(photos),
                 "--out", str(tmp_path / "bench"), "--name", "run", "--backend", "toy")
    assert bench.returncode == 0, bench.stderr + bench.stdout
    rows = json.loads((tmp_path / "bench" / "run.json").read_text())["rows"]
    toy = [r for r in rows if r["format"] == "Toy"]
    assert toy and toy[0]["status"] == "ok" and toy[0]["precision"] == "fp32" and toy[0]["p50_ms"] > 0


def _modules_naming(word: str) -> set[str]:
    """Non-test modules of the distribution whose text names ``word`` (any case, comments included)."""
    folders = ("runtime", "train", "export", "compress", "serve", "benchmarks", "cli")
    return {str(path.relative_to(ROOT)) for folder in folders for path in (ROOT / folder).rglob("*.py")
            if word in path.read_text().lower()}


def test_engines_are_named_only_where_the_table_puts_them():
    assert _modules_naming("openvino") <= {"runtime/backends/openvino.py", "runtime/formats.py", "runtime/probes.py"}
    outside = {m for m in _modules_naming("tensorrt")
               if not m.startswith(("runtime/backends/", "export/")) and m != "runtime/formats.py"}
    assert outside == set()
