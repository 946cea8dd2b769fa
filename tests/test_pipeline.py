"""End to end on tiny nets: train -> resume -> export (parity) -> stylize, through the real CLI."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
from safetensors.torch import load_file

from stylecast.runtime import formats
from stylecast.runtime.artifacts import read_metadata
from stylecast.runtime.stylizer import Stylizer

from .conftest import run_cli, train_args


def _hashes(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_checkpoint_carries_metadata(tiny_checkpoint, style_image):
    meta = read_metadata(tiny_checkpoint)
    assert meta["style"] == "tiny" and meta["steps"] == "3" and meta["precision"] == "fp32"
    assert meta["style_image_sha256"] == hashlib.sha256(style_image.read_bytes()).hexdigest()
    assert json.loads(meta["arch"])["width"] == 4
    assert "random" in meta["loss_net"]
    assert json.loads(meta["versions"])["torch"]
    assert (tiny_checkpoint.parent / "run" / "log.csv").is_file()
    assert (tiny_checkpoint.parent / "run" / "loss.png").stat().st_size > 1000


def test_resume_continues_exactly(tmp_path, photos, style_image, tiny_vgg):
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert run_cli(*train_args(photos, style_image, tiny_vgg, straight / "m.safetensors", straight, 4)).returncode == 0
    first = run_cli(*train_args(photos, style_image, tiny_vgg, split / "m.safetensors", split, 2))
    assert first.returncode == 0, first.stderr
    again = run_cli(*train_args(photos, style_image, tiny_vgg, split / "m.safetensors", split, 4))
    assert again.returncode != 0 and "--resume" in again.stderr  # never silently overwrites a run
    resumed = run_cli(*train_args(photos, style_image, tiny_vgg, split / "m.safetensors", split, 4), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    a, b = load_file(str(straight / "m.safetensors")), load_file(str(split / "m.safetensors"))
    assert all((a[k] == b[k]).all() for k in a)
    log = (split / "log.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in log[1:]] == ["1", "2", "3", "4"]


def test_resume_refuses_changed_settings(tmp_path, photos, style_image, tiny_vgg):
    args = train_args(photos, style_image, tiny_vgg, tmp_path / "m.safetensors", tmp_path, 2)
    assert run_cli(*args).returncode == 0
    changed = run_cli(*args, "--lr", "0.01", "--resume")
    assert changed.returncode == 2 and "hyperparameters differs" in changed.stderr


def test_compile_without_a_compiler_is_one_line_before_any_training(tmp_path, photos, style_image, tiny_vgg):
    args = train_args(photos, style_image, tiny_vgg, tmp_path / "m.safetensors", tmp_path / "run", 2)
    failed = run_cli(*args, "--compile", env={"CXX": str(tmp_path / "no-such-c++")})
    assert failed.returncode != 0 and "Traceback" not in failed.stderr
    assert "needs a C++ compiler" in failed.stderr and "--no-compile" in failed.stderr
    assert not (tmp_path / "run").exists() and not (tmp_path / "m.safetensors").exists()


def test_compiler_check_names_what_each_device_needs(monkeypatch, tmp_path):
    import torch

    from stylecast.benchmarks.torch_backend import MODES, unavailable
    from stylecast.train.compiled import compiler_missing

    monkeypatch.setenv("CC", str(tmp_path / "no-cc"))
    assert "a C compiler" in compiler_missing(torch.device("cuda"))
    monkeypatch.setenv("CXX", str(tmp_path / "no-c++"))
    assert unavailable(MODES["compile"], torch.device("cpu")).startswith("skipped: torch.compile on cpu needs a C++")
    monkeypatch.setenv("CXX", sys.executable)  # any executable on the path stands for a compiler
    assert compiler_missing(torch.device("cpu")) is None


def test_export_writes_parity_report_and_metadata(tiny_onnx, tiny_checkpoint):
    report = json.loads((tiny_onnx.parent / "report.json").read_text())
    entry = report["exports"][0]
    assert entry["passed"] and entry["precision"] == "fp32"
    sizes = {(p["height"], p["width"]) for p in entry["parity"]}
    assert any(h % 4 or w % 4 for h, w in sizes), "parity must include a non-multiple-of-4 size"
    assert min(p["psnr_min"] for p in entry["parity"]) >= 60
    meta = read_metadata(tiny_onnx)
    assert meta["source_sha256"] == hashlib.sha256(tiny_checkpoint.read_bytes()).hexdigest()
    assert meta["style"] == "tiny" and meta["precision"] == "fp32" and "width" in meta["arch"]


def test_onnx_graph_is_dynamic_opset18_and_checked(tiny_onnx):
    import onnx

    model = onnx.load(str(tiny_onnx))
    onnx.checker.check_model(model, full_check=True)
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 18
    dims = [d.dim_param for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", "", "height", "width"]
    assert any(n.op_type == "Clip" for n in model.graph.node)


def test_export_reuses_only_current_onnx(tiny_onnx, tiny_checkpoint, photos, tmp_path):
    """A current export is reused; one from another checkpoint, or a truncated file, is exported again."""
    import onnx

    from stylecast.runtime.artifacts import sha256_file

    out = tmp_path / "art"
    shutil.copytree(tiny_onnx.parent, out)
    again = run_cli("export", str(tiny_checkpoint), "--out", str(out), "--parity-images", str(photos))
    assert again.returncode == 0 and "up to date" in again.stdout
    stale = onnx.load(str(out / "tiny.fp32.onnx"))
    next(p for p in stale.metadata_props if p.key == "source_sha256").value = "0" * 64  # an older checkpoint's
    onnx.save(stale, str(out / "tiny.fp32.onnx"))
    redone = run_cli("export", str(tiny_checkpoint), "--out", str(out), "--parity-images", str(photos))
    assert redone.returncode == 0 and "up to date" not in redone.stdout, redone.stdout
    assert read_metadata(out / "tiny.fp32.onnx")["source_sha256"] == sha256_file(tiny_checkpoint)
    (out / "tiny.fp32.onnx").write_bytes(b"\x08\x07 truncated")
    repaired = run_cli("export", str(tiny_checkpoint), "--out", str(out), "--parity-images", str(photos))
    assert repaired.returncode == 0 and "up to date" not in repaired.stdout, repaired.stderr
    assert read_metadata(out / "tiny.fp32.onnx")["source_sha256"] == sha256_file(tiny_checkpoint)


def test_stylize_cli_batch_with_bad_file(tiny_onnx, photos, tmp_path):
    inputs = tmp_path / "in"
    shutil.copytree(photos, inputs)
    (inputs / "broken.jpg").write_bytes(b"not really a jpeg")
    before = _hashes(inputs)
    result = run_cli("stylize", str(inputs), "--model", str(tiny_onnx), "--out", str(tmp_path / "out"),
                     "--gallery", str(tmp_path / "gallery.png"))
    assert result.returncode == 1
    assert "broken.jpg" in result.stderr and "4 stylized" in result.stderr and "1 failed" in result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "astronaut.tiny.jpg", "chelsea.tiny.jpg", "coffee.tiny.jpg", "rocket.tiny.jpg"]
    assert _hashes(inputs) == before  # inputs untouched
    assert (tmp_path / "gallery.png").stat().st_size > 1000


def test_stylize_refuses_to_overwrite_an_input(tiny_onnx, photos, tmp_path):
    victim = tmp_path / "x.tiny.jpg"
    shutil.copy(photos / "coffee.jpg", tmp_path / "x.jpg")
    shutil.copy(photos / "coffee.jpg", victim)
    before = victim.read_bytes()
    result = run_cli("stylize", str(tmp_path / "x.jpg"), str(victim), "--model", str(tiny_onnx), "--out", str(tmp_path))
    assert result.returncode == 2 and "overwrite an input" in result.stderr
    assert victim.read_bytes() == before


def test_bad_model_file_is_one_line_error(tmp_path, photos):
    fake = tmp_path / "fake.onnx"
    fake.write_bytes(b"\x00garbage")
    result = run_cli("stylize", str(photos), "--model", str(fake))
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "fake.onnx" in result.stderr
    debug = run_cli("--debug", "stylize", str(photos), "--model", str(fake))
    assert "Traceback" in debug.stderr


def test_onnx_without_stylecast_metadata_refused(tiny_onnx, tmp_path, photos):
    import onnx

    model = onnx.load(str(tiny_onnx))
    del model.metadata_props[:]
    foreign = tmp_path / "foreign.onnx"
    onnx.save(model, str(foreign))
    result = run_cli("stylize", str(photos), "--model", str(foreign))
    assert result.returncode == 2 and "not a stylecast onnx" in result.stderr


def test_stylizer_api_matches_batch_and_single(tiny_onnx):
    stylizer = Stylizer(tiny_onnx)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (37, 29, 3), dtype=np.uint8) for _ in range(2)]
    batch = stylizer.stylize_batch(images)
    assert batch[0].shape == (37, 29, 3) and batch[0].dtype == np.uint8
    assert np.array_equal(batch[1], stylizer(images[1]))


BLOCK_TORCH = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch.") or name == "safetensors.torch":
            raise ImportError("torch is blocked in this test")
sys.meta_path.insert(0, Block())
from stylecast.cli import main
sys.argv = ["stylecast"] + sys.argv[1:]
main()
"""


def test_runtime_runs_with_torch_blocked(tiny_onnx, photos, tmp_path):
    """The Jetson promise: stylize (and info) work with torch impossible to import."""
    cmd = [sys.executable, "-c", BLOCK_TORCH]
    env = {**os.environ}
    done = subprocess.run([*cmd, "stylize", str(photos), "--model", str(tiny_onnx), "--out", str(tmp_path)],
                          capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert len(list(tmp_path.glob("*.tiny.jpg"))) == 4
    info = subprocess.run([*cmd, "info", str(tiny_onnx)], capture_output=True, text=True, env=env)
    assert info.returncode == 0 and '"style": "tiny"' in info.stdout
    train = subprocess.run([*cmd, "train", "--style", "x", "--data", "."], capture_output=True, text=True, env=env)
    assert train.returncode == 2 and "stylecast[train]" in train.stderr


def test_runtime_package_never_imports_torch():
    code = "import sys, stylecast.cli, stylecast.runtime.stylizer; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


@pytest.mark.slow
def test_torchrun_ddp_two_cpu_processes(tmp_path, photos, style_image, tiny_vgg):
    args = train_args(photos, style_image, tiny_vgg, tmp_path / "ddp.safetensors", tmp_path / "run", 2)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "stylecast.cli", *args, "--device", "cpu"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    meta = read_metadata(tmp_path / "ddp.safetensors")
    assert meta["steps"] == "2"
    rows = (tmp_path / "run" / "log.csv").read_text().splitlines()
    assert len(rows) == 3  # header + 2 steps, written by rank 0 only


def test_export_fails_loudly_below_parity_floor(tiny_checkpoint, photos, tmp_path, monkeypatch):
    from stylecast.export import pipeline
    from stylecast.runtime.errors import StylecastError

    unreachable = replace(formats.PRECISIONS["fp32"], psnr_floor_db=1000.0)
    monkeypatch.setitem(formats.PRECISIONS, "fp32", unreachable)  # no real export reaches 1000 dB
    request = pipeline.ExportRequest(tiny_checkpoint, tmp_path, parity_images=photos)
    with pytest.raises(StylecastError, match="export check failed"):
        pipeline.run_export(request, log=lambda _: None)
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["exports"][0]["passed"] is False  # the evidence is kept for the user to read
