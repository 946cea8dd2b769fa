"""Hostile input and faults: every bad file reported in one line, good ones stylized, nothing lost."""

import errno
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from stylecast.benchmarks.media.hostile import make_hostile
from stylecast.runtime.backends import load_backend
from stylecast.runtime.errors import StylecastError
from stylecast.runtime.images import save_image

from .conftest import run_cli, train_args


def _tree(root: Path) -> dict[str, str]:
    """Content hash of every regular file (and the target of every link) under ``root``, mode included."""
    found = {}
    for folder, dirs, files in os.walk(root):
        for name in files + dirs:
            path = Path(folder) / name
            key = str(path.relative_to(root))
            if path.is_symlink():
                found[key] = "link:" + os.readlink(path)
            elif path.is_file():
                found[key] = hashlib.sha256(path.read_bytes()).hexdigest() + oct(path.stat().st_mode)
            elif not path.is_dir():
                found[key] = "special:" + oct(path.stat().st_mode)
    return found


def _output_name(case_name: str) -> str:
    path = Path(case_name)
    suffix = path.suffix.lower() if path.suffix.lower() not in (".gif", ".pgm", ".ppm", ".heic") else ".png"
    return (path.parent / f"{path.stem}.tiny{suffix}").as_posix()  # a subfolder's input keeps its subfolder


def test_hostile_folder_end_to_end(tiny_onnx, tmp_path):
    source, out = tmp_path / "hostile", tmp_path / "out"
    cases = make_hostile(source)
    assert len(cases) >= 40 and sum(not c.ok for c in cases) >= 20
    before = _tree(source)
    result = run_cli("stylize", str(source), "--model", str(tiny_onnx), "--out", str(out))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    for case in cases:
        reports = [line for line in lines if line.startswith(f"failed: {source / case.name}: ")]
        if case.ok:
            assert not reports, reports
            assert (out / _output_name(case.name)).is_file(), case.name
        else:
            assert len(reports) == 1 and case.expect in reports[0], (case.name, reports)
    good = sum(c.ok for c in cases)
    assert f"{good} stylized into {out}, {len(cases) - good} failed: " in result.stderr
    assert "animated (3 frames): used the first frame" in result.stderr
    assert _tree(source) == before  # inputs byte-identical, modes and links unchanged
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert written == sorted([_output_name(c.name) for c in cases if c.ok] + ["clip.tiny.mp4.json"])
    rotated = {n: Image.open(out / f"exif-{n}.tiny.jpg").size for n in range(1, 9)}
    assert all(rotated[n] == (40, 30) for n in (1, 2, 3, 4)) and all(rotated[n] == (30, 40) for n in (5, 6, 7, 8))
    assert Image.open(out / "rgba.tiny.png").mode == "RGBA"
    assert Image.open(out / "tiny-1x1.tiny.png").size == (1, 1)
    assert Image.open(out / "strip-2400x24.tiny.png").size == (2400, 24)


def test_allow_huge_lifts_the_bomb_guard(tiny_onnx, tmp_path):
    """The header claims 10000x10000 but holds 8x8 pixels: with the guard lifted Pillow gets as far as
    decoding and finds the data missing, which proves the flag reached the loader."""
    make_hostile(tmp_path / "h", video=False)
    bomb = tmp_path / "h" / "bomb-warning.png"
    refused = run_cli("stylize", str(bomb), "--model", str(tiny_onnx), "--out", str(tmp_path / "o"))
    assert refused.returncode == 1 and "decompression-bomb limit; pass --allow-huge" in refused.stderr
    allowed = run_cli("stylize", str(bomb), "--model", str(tiny_onnx), "--out", str(tmp_path / "o"), "--allow-huge")
    assert allowed.returncode == 1 and "bomb-warning.png: damaged image" in allowed.stderr


def _onnx_with(tiny_onnx, tmp_path, name, edit):
    import onnx

    model = onnx.load(str(tiny_onnx))
    edit(model)
    path = tmp_path / name
    onnx.save(model, str(path))
    return path


def _set_meta(model, key, value):
    for prop in model.metadata_props:
        if prop.key == key:
            prop.value = value


def _drop_meta(model, key):
    kept = [(p.key, p.value) for p in model.metadata_props if p.key != key]
    del model.metadata_props[:]
    for k, v in kept:
        model.metadata_props.add(key=k, value=v)


@pytest.mark.parametrize("name,make,expect", [
    ("garbage.onnx", lambda m, d: (d / "garbage.onnx").write_bytes(os.urandom(256)), "not a loadable ONNX model"),
    ("truncated.onnx", lambda m, d: (d / "truncated.onnx").write_bytes(m.read_bytes()[: m.stat().st_size // 2]),
     "not a loadable ONNX model"),
    ("picture.onnx", lambda m, d: Image.new("RGB", (8, 8)).save(d / "picture.onnx", format="PNG"),
     "not a loadable ONNX model"),
    ("checkpoint.onnx", lambda m, d: _onnx_with(m, d, "checkpoint.onnx", lambda x: _set_meta(x, "stylecast.format",
                                                                                           "checkpoint")),
     "not a stylecast onnx (checkpoint)"),
    ("no-arch.onnx", lambda m, d: _onnx_with(m, d, "no-arch.onnx", lambda x: _drop_meta(x, "arch")), "lacks ['arch']"),
    ("weights.safetensors", lambda m, d: (d / "weights.safetensors").write_bytes(b"\x08" + b"\x00" * 7 + b"{}"),
     "no backend for '.safetensors'"),
    ("model.engine", lambda m, d: (d / "model.engine").write_bytes(b"TRT engine for another GPU"),
     "no sidecar"),
    ("folder.onnx", lambda m, d: (d / "folder.onnx").mkdir(), "model not found"),
])
def test_bad_model_files_refused(tiny_onnx, tmp_path, name, make, expect):
    make(tiny_onnx, tmp_path)
    with pytest.raises(StylecastError, match=None) as info:
        load_backend(tmp_path / name)
    assert expect in str(info.value) and name in str(info.value)


def test_model_with_non_image_input_refused(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=8)
    for key, value in {"stylecast.format": "onnx", "style": "x", "arch": "{}", "precision": "fp32"}.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(tmp_path / "flat.onnx"))
    with pytest.raises(StylecastError, match="expected one NCHW image input"):
        load_backend(tmp_path / "flat.onnx")


def test_unusable_output_paths(tiny_onnx, photos, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    under_file = run_cli("stylize", str(photos), "--model", str(tiny_onnx), "--out", str(blocker / "sub"))
    assert under_file.returncode == 2 and "cannot create this folder" in under_file.stderr
    is_file = run_cli("stylize", str(photos), "--model", str(tiny_onnx), "--out", str(blocker))
    assert is_file.returncode == 2 and "is not a folder" in is_file.stderr
    out = tmp_path / "out"
    (out / "coffee.tiny.jpg").mkdir(parents=True)  # the planned output name is taken by a folder
    taken = run_cli("stylize", str(photos), "--model", str(tiny_onnx), "--out", str(out))
    assert taken.returncode == 1 and "coffee.tiny.jpg: is a folder" in taken.stderr and "3 stylized" in taken.stderr
    assert not list(out.glob(".*.part"))
    two = run_cli("stylize", str(photos), "--model", str(tiny_onnx), "--out", str(tmp_path / "one.jpg"))
    assert two.returncode == 2 and "names one file but 4 inputs" in two.stderr
    one = run_cli("stylize", str(photos / "coffee.jpg"), "--model", str(tiny_onnx), "--out", str(tmp_path / "one.png"))
    assert one.returncode == 0 and Image.open(tmp_path / "one.png").format == "PNG"


def test_disk_full_leaves_no_partial_file(tmp_path, monkeypatch):
    def fill_disk(self, fp, *args, **kwargs):
        Path(fp).write_bytes(b"half an image")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", fill_disk)
    with pytest.raises(StylecastError, match="out.png: could not write \\(No space left on device\\)"):
        save_image(tmp_path / "out.png", np.zeros((8, 8, 3), np.uint8))
    assert list(tmp_path.iterdir()) == []


def _default_sigint() -> None:
    """A shell's background job inherits SIGINT ignored, and Python then keeps ignoring it: undo that."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _wait_for(predicate, seconds=120.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_sigint_during_batch_leaves_only_complete_outputs(tiny_onnx, tmp_path):
    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    noise = np.random.default_rng(0).integers(0, 256, (320, 320, 3), dtype=np.uint8)
    Image.fromarray(noise).save(inputs / "img-000.png")
    for i in range(1, 400):
        shutil.copy(inputs / "img-000.png", inputs / f"img-{i:03d}.png")
    cmd = [sys.executable, "-m", "stylecast.cli", "stylize", str(inputs), "--model", str(tiny_onnx),
           "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_default_sigint)
    try:
        assert _wait_for(lambda: out.is_dir() and len(list(out.glob("*.tiny.png"))) >= 2)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr
    assert "interrupted after" in stderr and "no partial file" in stderr and "Traceback" not in stderr
    written = sorted(out.iterdir())
    assert 2 <= len(written) < 400 and all(p.name.endswith(".tiny.png") for p in written)
    for path in written:
        with Image.open(path) as img:
            img.load()  # every file left is a complete image


def test_sigint_during_training_saves_state_and_resumes(tmp_path, photos, style_image, tiny_vgg):
    run_dir, model = tmp_path / "run", tmp_path / "m.safetensors"
    args = train_args(photos, style_image, tiny_vgg, model, run_dir, steps=100000)
    cmd = [sys.executable, "-m", "stylecast.cli", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, preexec_fn=_default_sigint)
    log = run_dir / "log.csv"
    try:
        assert _wait_for(lambda: log.is_file() and len(log.read_text().splitlines()) >= 4, 300)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130 and "--resume" in stderr, stderr
    assert not model.exists()  # an interrupted run ships no model, only its resumable state
    from stylecast.runtime.artifacts import read_metadata

    stopped = int(read_metadata(run_dir / "state.safetensors")["step"])
    resumed = run_cli(*train_args(photos, style_image, tiny_vgg, model, run_dir, steps=stopped + 2), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert read_metadata(model)["steps"] == str(stopped + 2)
    steps = [int(row.split(",")[0]) for row in log.read_text().splitlines()[1:]]
    assert steps == list(range(1, stopped + 3))


def test_zero_or_negative_step_counts_are_refused(photos, style_image, tiny_vgg, tmp_path):
    """0 is a value, not 'use the preset': one line, exit 2, and no run folder or model written."""
    model, run_dir = tmp_path / "m.safetensors", tmp_path / "run"
    done = run_cli(*train_args(photos, style_image, tiny_vgg, model, run_dir, steps=0))
    assert done.returncode == 2 and "--steps 0: must be at least 1" in done.stderr and "Traceback" not in done.stderr
    assert not model.exists() and not run_dir.exists()
    for flag in ("--steps", "--prune-steps"):
        done = run_cli("compress", "--teacher", str(model), "--data", str(photos), "--work", str(tmp_path / "w"),
                       flag, "-5")
        assert done.returncode == 2 and f"{flag} -5: must be at least 1" in done.stderr
    assert not (tmp_path / "w").exists()
    for args, says in ((("compress", "--teacher", "t", "--data", "d", "--holdout", "0"), "--holdout 0"),
                       (("prune", "--model", "m", "--out", "o", "--target-flops", "20", "--step-ratio", "0"),
                        "--step-ratio"),
                       (("bench", "--resolution", "0"), "--resolution 0: expected"),
                       (("evaluate", str(photos), "--style", str(style_image), "--method", "a=x.onnx", "--size", "0"),
                        "--size 0")):
        done = run_cli(*args)
        assert done.returncode == 2 and says in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_folders_keep_their_tree_and_out_stays_outside_them(tiny_onnx, tmp_path):
    """As `stylize --ray` names outputs: a lone folder's tree under --out, several inputs' folders each under its
    own name, files at the top; two folders of one name and an --out inside an input are refused up front."""
    for folder in ("one/photos", "one/photos/sub", "two/photos", "more"):
        (tmp_path / folder).mkdir(parents=True, exist_ok=True)
    for name in ("one/photos/a.png", "one/photos/sub/a.png", "more/b.png", "lone.png"):
        Image.new("RGB", (24, 20), "gray").save(tmp_path / name)
    out = tmp_path / "out"
    done = run_cli("stylize", str(tmp_path / "one/photos"), "--model", str(tiny_onnx), "--out", str(out / "lone"))
    assert done.returncode == 0, done.stderr
    assert sorted(p.relative_to(out / "lone").as_posix() for p in (out / "lone").rglob("*.png")) == [
        "a.tiny.png", "sub/a.tiny.png"]
    done = run_cli("stylize", str(tmp_path / "one/photos"), str(tmp_path / "more"), str(tmp_path / "lone.png"),
                   "--model", str(tiny_onnx), "--out", str(out / "many"))
    assert done.returncode == 0, done.stderr
    assert sorted(p.relative_to(out / "many").as_posix() for p in (out / "many").rglob("*.png")) == [
        "lone.tiny.png", "more/b.tiny.png", "photos/a.tiny.png", "photos/sub/a.tiny.png"]
    for args, message in (([str(tmp_path / "one/photos"), str(tmp_path / "two/photos")], "two input folders are named"),
                          ([str(tmp_path / "one")], "is inside the input folder")):
        refused = run_cli("stylize", *args, "--model", str(tiny_onnx), "--out", str(tmp_path / "one" / "out"))
        assert refused.returncode != 0 and message in refused.stderr and "Traceback" not in refused.stderr
    assert not (tmp_path / "one" / "out").exists()
