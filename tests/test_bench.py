"""`stylecast bench` on tiny nets: every format gets a row, failures stay in their row, the gate bites."""

from __future__ import annotations

import importlib.util
import json
import shutil

import numpy as np
import pytest

from stylecast.benchmarks import gate
from stylecast.benchmarks.suite import Resolution
from stylecast.benchmarks.timing import summarise

from .conftest import run_cli

FAST = ["--quick", "--resolution", "64", "--budget", "0.5", "--threads", "1"]


def test_resolutions_parse():
    assert Resolution.parse("256") == Resolution(256, 256)
    assert Resolution.parse("1080p") == Resolution(1080, 1920) and Resolution.parse("1080p").label == "1920x1080"
    assert Resolution.parse("640x480") == Resolution(480, 640)
    with pytest.raises(gate.StylecastError, match="--resolution big: expected WIDTHxHEIGHT"):
        Resolution.parse("big")


def test_summarise_median_and_spread():
    stats = summarise([float(v) for v in range(1, 12)])  # 1..11 ms
    assert stats["p50"] == 6 and stats["p10"] == 2 and stats["p90"] == 10 and stats["iqr"] == 5
    assert stats["min"] == 1 and stats["max"] == 11 and stats["n"] == 11


def _conv_gflops(cin: int, cout: int, kernel: int, pixels: int) -> float:
    return 2 * cin * cout * kernel * kernel * pixels / 1e9


def test_flops_and_params_of_the_johnson_net():
    """Counted by PyTorch's FlopCounterMode, checked against the layer-by-layer formula of the architecture."""
    from stylecast.compress.prune import gflops as count_gflops
    from stylecast.train.model import TransformerNet, count_parameters

    model = TransformerNet()
    full, half, quarter = 256 * 256, 128 * 128, 64 * 64
    expected = (_conv_gflops(3, 32, 9, full) + _conv_gflops(32, 64, 3, half) + _conv_gflops(64, 128, 3, quarter)
                + 10 * _conv_gflops(128, 128, 3, quarter) + _conv_gflops(128, 64, 3, half)
                + _conv_gflops(64, 32, 3, full) + _conv_gflops(32, 3, 9, full))
    assert count_gflops(model, 256, 256) == pytest.approx(expected, rel=1e-9)
    assert expected == pytest.approx(20.16, abs=0.01)
    assert count_gflops(model, 512, 512) == pytest.approx(4 * expected, rel=1e-9)
    assert count_parameters(model) == pytest.approx(1.68e6, rel=0.01)


def _row(key: str, speedup: float, psnr: float = 999.0, ssim: float = 1.0, status: str = "ok") -> dict:
    variant, resolution, fmt, precision, engine = key.split("/")
    return {"variant": variant, "resolution": resolution, "format": fmt, "precision": precision, "engine": engine,
            "status": status, "speedup": speedup, "psnr_min": psnr, "ssim_min": ssim}


ORT = "m/256x256/ONNX Runtime/fp32/CPU"
EAGER = "m/256x256/PyTorch/fp32/eager"


MACHINE = {"vendor": "AuthenticAMD", "cpu": "AMD EPYC", "family": 25, "model": 1, "features": ["avx2"], "cores": 2,
           "torch": "2.13", "onnxruntime": "1.32"}


def _baseline(*rows: dict, machine: dict = MACHINE) -> dict:
    result = {"machine": {"cpu": "x", "versions": {}, "fingerprint": machine}, "settings": {"resolutions": ["256x256"]},
              "rows": list(rows)}
    return gate.make_baseline(result, {"speedup_rel": 0.3, "psnr_db": 6.0, "ssim": 0.01})


def _lines(problems: list) -> list[str]:
    return [str(p) for p in problems]


def test_gate_compares_same_run_ratios_with_tolerance():
    baseline = _baseline(_row(EAGER, 1.0), _row(ORT, 2.0, psnr=130.0))
    assert gate.check({"rows": [_row(EAGER, 1.0), _row(ORT, 1.5, psnr=110.0)]}, baseline) == []  # within 30%; both exact
    slower = _lines(gate.check({"rows": [_row(EAGER, 1.0), _row(ORT, 1.3)]}, baseline))
    assert len(slower) == 1 and slower[0].startswith(ORT) and "speedup 1.3x < 1.40x" in slower[0]
    worse = gate.check({"rows": [_row(EAGER, 1.0), _row(ORT, 2.0, psnr=70.0, ssim=0.95)]}, baseline)
    assert [p.kind for p in worse] == ["psnr", "ssim"]
    broken = _lines(gate.check({"rows": [_row(EAGER, 1.0), _row(ORT, 0.0, status="error: boom")]}, baseline))
    assert broken == [f"{ORT}: error: boom"]
    assert "not measured" in str(gate.check({"rows": [_row(EAGER, 1.0)]}, baseline)[0])


def test_a_retrained_model_of_another_architecture_waits_for_a_new_baseline():
    """Speedups of a width-16 net are not a regression of the width-32 net the baseline timed."""
    other = "n/256x256/ONNX Runtime/fp32/CPU"
    timed = {"machine": {"cpu": "x", "versions": {}, "fingerprint": MACHINE}, "settings": {"resolutions": ["256x256"]},
             "variants": [{"name": "m", "arch": {"width": 32}}, {"name": "n", "arch": {"width": 16}}],
             "rows": [_row(EAGER, 1.0), _row(ORT, 2.0), _row(other, 2.0)]}
    baseline = gate.make_baseline(timed, {"speedup_rel": 0.3, "psnr_db": 6.0, "ssim": 0.01})
    now = {**timed, "variants": [{"name": "m", "arch": {"width": 16}}, {"name": "n", "arch": {"width": 16}}],
           "rows": [_row(EAGER, 1.0), _row(ORT, 1.0), _row(other, 1.0)]}
    kept, lines = gate.comparable(baseline, now)
    assert lines == ["m: the baseline timed architecture width=32, this run width=16"]
    assert [p.key for p in gate.check(now, kept)] == [other]  # the unchanged model is still gated
    assert gate.comparable(baseline, timed) == (baseline, [])


def test_floors_hold_on_any_machine():
    """Without a baseline: failing rows and parity under the precision's floor are still regressions."""
    int8 = "m/256x256/ONNX Runtime/int8/CPU"
    bf16 = "m/256x256/PyTorch/bf16/bf16 autocast"
    rows = [_row(EAGER, 1.0), _row(ORT, 1.1, psnr=116.0), _row(int8, 1.6, psnr=41.0, ssim=0.99), _row(bf16, 0.6, psnr=41.0),
            _row("m/256x256/TensorRT/-/engine", 0.0, status="skipped: TensorRT not installed")]
    assert gate.check_floors({"rows": rows}) == []
    rows += [_row(int8.replace("CPU", "X"), 1.6, psnr=30.0, ssim=0.9), _row(ORT.replace("CPU", "Y"), 0, status="error: x")]
    assert [(p.key.split("/")[-1], p.kind) for p in gate.check_floors({"rows": rows})] == [
        ("X", "psnr"), ("X", "ssim"), ("Y", "status")]


def test_baseline_of_this_machine_class_is_selected(tmp_path):
    zen4 = {**MACHINE, "model": None, "features": ["avx2", "avx512f", "avx512_vnni", "avx512_bf16"]}
    for machine in (zen4, MACHINE, {**MACHINE, "cores": 16}):
        gate.save_baseline(_baseline(_row(EAGER, 1.0), machine=machine), tmp_path)
    assert len(list(tmp_path.glob("cpu-quick-amd-epyc-*.json"))) == 3
    chosen, passed_over = gate.select_baseline(tmp_path, {**MACHINE, "onnxruntime": "1.40"})
    assert chosen == gate.baseline_file(tmp_path, MACHINE) and len(passed_over) == 2
    assert any("differs in features" in line for line in passed_over)
    assert any("differs in cores 16 (here 2)" in line for line in passed_over)
    assert gate.version_notes(gate.load_baseline(chosen), {**MACHINE, "onnxruntime": "1.40"}) == [
        "onnxruntime 1.32 (here 1.40)"]
    intel = {**MACHINE, "vendor": "GenuineIntel", "family": 6, "model": 207}
    assert gate.select_baseline(tmp_path, intel)[0] is None


def test_remeasured_rows_keep_the_faster_ratio():
    result = {"rows": [_row(EAGER, 1.0), _row(ORT, 0.7)], "machine": {}}
    again = {"rows": [_row(EAGER, 1.0), _row(ORT, 1.1)]}
    merged = gate.keep_fastest(result, again)
    assert [r["speedup"] for r in merged["rows"]] == [1.0, 1.1] and merged["rows"][1]["remeasured"]
    assert gate.keep_fastest(merged, {"rows": [_row(ORT, 0.5)]})["rows"][1]["speedup"] == 1.1


def test_markdown_shows_gpu_stages_and_highlights():
    """The CUDA-only column (H2D/compute/D2H from events) renders when rows carry it; CPU runs leave it out."""
    from stylecast.benchmarks.report import markdown

    gpu = {**_row(ORT, 2.5, psnr=41.25), "p50_ms": 4.0, "h2d_p50_ms": 0.5, "compute_p50_ms": 3.0, "d2h_p50_ms": 0.25}
    result = {"machine": {"cpu": "cpu", "gpu": "GPU", "cpu_cores_usable": 2},
              "settings": {"threads": 2, "device": "cuda", "batch": 1, "baseline": "PyTorch eager fp32", "timer": "events",
                           "photo_count": 4, "photos": "p", "policy": {"warmup_calls": 3, "warmup_s": 2.0, "min_rounds": 5,
                                                                       "max_rounds": 40, "budget_s": 60.0}},
              "created": "now", "peaks_gflops": {"fp32": {"gflops": 100.0}}, "rows": [_row(EAGER, 1.0), gpu]}
    text = markdown(result)
    assert "H2D/compute/D2H ms" in text and "| 0.50/3.00/0.25 |" in text and "| 2.50x |" in text
    assert ("- m 256x256: fastest ONNX Runtime fp32 CPU (2.50x, 41.2 dB, below its floor); fastest within the parity "
            "floor: PyTorch fp32 eager (1.00x, exact dB); best PyTorch mode: eager (1.00x)") in text
    int8 = {**_row("m/256x256/ONNX Runtime/int8/CPU", 4.0, psnr=40.0), "p50_ms": 2.5}
    result["rows"] = [_row(EAGER, 1.0), {**gpu, "p50_ms": 4.0}, int8]
    assert "; ONNX Runtime CPU vs its fp32: int8 1.60x" in markdown(result)
    bf16 = {**_row("m/256x256/PyTorch/bf16/bf16 autocast", 0.6, psnr=41.0), "p50_ms": 16.0}
    result["rows"] = [_row(EAGER, 1.0), bf16]
    assert ("- m 256x256: fastest within the parity floor: PyTorch fp32 eager (1.00x, exact dB); best PyTorch mode: "
            "eager (1.00x); "
            "slower than eager: PyTorch bf16 bf16 autocast 0.60x") in markdown(result)
    result["rows"] = [_row(EAGER, 1.0)]
    assert "H2D" not in markdown(result)


def test_baseline_file_is_validated(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"rows": {}}')
    with pytest.raises(gate.StylecastError, match="not a stylecast bench baseline"):
        gate.load_baseline(bad)
    with pytest.raises(gate.StylecastError, match="--save-baseline"):
        gate.load_baseline(tmp_path / "missing.json")


@pytest.fixture(scope="module")
def bench_tree(tmp_path_factory, tiny_checkpoint, tiny_onnx):
    """models/tiny.safetensors + artifacts/tiny/: a good fp32 export and a damaged 'fp16' file."""
    root = tmp_path_factory.mktemp("bench")
    (root / "models").mkdir()
    shutil.copy(tiny_checkpoint, root / "models" / "tiny.safetensors")
    (root / "artifacts" / "tiny").mkdir(parents=True)
    shutil.copy(tiny_onnx, root / "artifacts" / "tiny" / "tiny.fp32.onnx")
    (root / "artifacts" / "tiny" / "tiny.fp16.onnx").write_bytes(b"\x08\x07 truncated download")
    return root


def _bench(root, *args: str):
    return run_cli("bench", "--models", str(root / "models"), "--artifacts", str(root / "artifacts"), *FAST, *args)


@pytest.fixture(scope="module")
def first_run(bench_tree, photos):
    readme = bench_tree / "README.md"
    readme.write_text("# Title\n\n<!-- bench-results:start -->\nold figures\n<!-- bench-results:end -->\n\nAfter.\n")
    done = _bench(bench_tree, "--photos", str(photos), "--out", str(bench_tree / "out"), "--name", "run",
                  "--save-baseline", str(bench_tree / "baseline.json"), "--readme", str(readme))
    assert done.returncode == 0, done.stderr + done.stdout
    return json.loads((bench_tree / "out" / "run.json").read_text())


def _find(result: dict, fmt: str, precision: str, engine: str | None = None) -> dict:
    return next(r for r in result["rows"] if r["format"] == fmt and r["precision"] == precision
                and (engine is None or r["engine"] == engine))


def test_bench_rows_for_every_format(first_run, bench_tree):
    eager = _find(first_run, "PyTorch", "fp32", "eager")
    assert eager["status"] == "ok" and eager["speedup"] == 1.0 and eager["psnr_min"] == 999.0
    assert eager["samples"] >= 5 and eager["p90_ms"] >= eager["p50_ms"] > 0 and eager["params"] > 0
    ort = _find(first_run, "ONNX Runtime", "fp32", "CPU")
    assert ort["status"] == "ok" and ort["psnr_min"] >= 60 and ort["ssim_min"] > 0.99 and ort["parity_images"] == 4
    assert ort["bytes"] == (bench_tree / "artifacts" / "tiny" / "tiny.fp32.onnx").stat().st_size
    assert ort["gflops"] == eager["gflops"] > 0 and ort["gflops_per_s"] > 0 and ort["speedup"] > 0
    damaged = _find(first_run, "ONNX Runtime", "fp16")
    assert damaged["status"].startswith("error:") and "tiny.fp16.onnx" in damaged["status"]
    trt_row = _find(first_run, "TensorRT", "-")["status"]  # the tree has no engine: skipped, with the reason
    if importlib.util.find_spec("tensorrt") is None:
        assert trt_row == "skipped: TensorRT not installed"
    else:
        assert trt_row.startswith("skipped: no tensorrt-engine file (") and "tiny.safetensors" in trt_row
    assert _find(first_run, "PyTorch", "fp32", "compile")["status"].startswith("skipped: --quick")
    assert first_run["peaks_gflops"]["fp32"]["gflops"] > 0 and first_run["settings"]["threads"] == 1
    assert first_run["machine"]["versions"]["onnxruntime"]
    table = (bench_tree / "out" / "run.md").read_text()
    assert "| model | res | format |" in table and "| tiny | 64x64 | ONNX Runtime | fp32 | CPU | ok |" in table
    assert (bench_tree / "out" / "run.png").stat().st_size > 5000
    readme = (bench_tree / "README.md").read_text()
    assert readme.startswith("# Title\n\n<!-- bench-results:start -->\n") and readme.endswith("-->\n\nAfter.\n")
    assert "old figures" not in readme and table in readme and "![latency vs parity](out/run.png)" in readme


@pytest.fixture
def sound_tree(bench_tree, tmp_path):
    """The bench tree without its damaged export: a failing row alone fails the gate on any machine."""
    tree = tmp_path / "tree"
    shutil.copytree(bench_tree, tree)
    (tree / "artifacts" / "tiny" / "tiny.fp16.onnx").unlink()
    return tree


def test_gate_passes_a_reasonable_baseline(first_run, bench_tree, sound_tree, photos, tmp_path):
    """The saved baseline with a loose speed tolerance: timing noise cannot fail it, parity still counts."""
    baseline = json.loads((bench_tree / "baseline.json").read_text())
    assert {gate.row_key(_find(first_run, "ONNX Runtime", "fp32", "CPU"))} <= set(baseline["rows"])
    assert baseline["machine_class"] == first_run["machine"]["fingerprint"]
    baseline["tolerance"]["speedup_rel"] = 0.99
    loose = tmp_path / "loose.json"
    loose.write_text(json.dumps(baseline))
    done = _bench(sound_tree, "--photos", str(photos), "--out", str(tmp_path), "--check", str(loose))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no regression against" in done.stdout
    damaged = _bench(bench_tree, "--photos", str(photos), "--out", str(tmp_path), "--check", str(loose))
    assert damaged.returncode == 1 and "regression: tiny/64x64/ONNX Runtime/fp16/CPU: error:" in damaged.stdout


def test_gate_picks_this_machine_class_from_a_folder(first_run, bench_tree, sound_tree, photos, tmp_path):
    """A folder holding only another machine's baseline: latency is not gated (one line says how to record
    one) and the run passes; with this machine's baseline added, that one gates it."""
    baseline = json.loads((bench_tree / "baseline.json").read_text())
    folder = tmp_path / "baselines"
    folder.mkdir()
    foreign = {**baseline, "machine_class": {**baseline["machine_class"], "vendor": "OtherVendor"}}
    foreign["rows"] = {k: {**v, "speedup": v["speedup"] * 10} for k, v in baseline["rows"].items()}
    (folder / "other.json").write_text(json.dumps(foreign))
    done = _bench(sound_tree, "--photos", str(photos), "--out", str(tmp_path / "a"), "--check", str(folder))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "passed over other.json" in done.stdout and "differs in vendor OtherVendor" in done.stdout
    assert [line for line in done.stdout.splitlines() if "latency not gated" in line][0].endswith(
        "record one with `make bench-baseline`")
    demanding = {**baseline, "rows": foreign["rows"]}
    (folder / "mine.json").write_text(json.dumps(demanding))
    done = _bench(sound_tree, "--photos", str(photos), "--out", str(tmp_path / "b"), "--check", str(folder),
                  "--confirm", "1")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "re-measuring" in done.stdout and "(attempt 1 of 1)" in done.stdout
    assert sum(line.startswith("regression:") and "speedup" in line for line in done.stdout.splitlines()) >= 2


def test_slowed_graph_for_the_gate_evaluation_keeps_the_pixels(tiny_onnx, tmp_path):
    """make bench-gate-eval's power check: more convs, the same output, so only latency can fail it."""
    import onnx
    import onnxruntime as ort

    from stylecast.benchmarks.studies.gate_eval import slowed_copy

    added = slowed_copy(tiny_onnx, tmp_path / "slow.onnx", 1.0, 0.05)
    convs = [sum(n.op_type == "Conv" for n in onnx.load(str(p)).graph.node) for p in (tiny_onnx, tmp_path / "slow.onnx")]
    assert added >= 1 and convs[1] == convs[0] + added
    x = np.random.default_rng(0).random((1, 3, 32, 40), dtype=np.float32)
    outputs = [ort.InferenceSession(str(p)).run(None, {"image": x})[0] for p in (tiny_onnx, tmp_path / "slow.onnx")]
    assert np.array_equal(outputs[0], outputs[1])


def test_gate_fails_on_real_regressions(first_run, bench_tree, sound_tree, photos, tmp_path):
    """A damaged export (last conv's bias off by 40, like a wrong normalisation) and a speedup the model
    cannot deliver: exit 1, both named."""
    import onnx
    from onnx import numpy_helper

    tree = sound_tree
    path = tree / "artifacts" / "tiny" / "tiny.fp32.onnx"
    model = onnx.load(str(path))
    last_bias = [n for n in model.graph.node if n.op_type == "Conv"][-1].input[2]
    bias = next(t for t in model.graph.initializer if t.name == last_bias)
    bias.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(bias) + np.float32(40.0), bias.name))
    onnx.save(model, str(path))
    baseline = json.loads((bench_tree / "baseline.json").read_text())
    baseline["tolerance"]["speedup_rel"] = 0.99
    eager_key = gate.row_key(_find(first_run, "PyTorch", "fp32", "eager"))
    channels_last = gate.row_key(_find(first_run, "PyTorch", "fp32", "channels_last"))
    baseline["rows"][channels_last]["speedup"] = 1000.0
    demanding = tmp_path / "demanding.json"
    demanding.write_text(json.dumps(baseline))
    done = _bench(tree, "--photos", str(photos), "--out", str(tmp_path / "out"), "--check", str(demanding))
    assert done.returncode == 1, done.stdout + done.stderr
    regressions = [line for line in done.stdout.splitlines() if line.startswith("regression:")]
    ort_key = gate.row_key(_find(first_run, "ONNX Runtime", "fp32", "CPU"))
    assert any(ort_key in line and "PSNR" in line for line in regressions), regressions
    assert any(channels_last in line and "speedup" in line for line in regressions), regressions
    assert not any(eager_key + ":" in line for line in regressions)


def test_stale_export_is_refused(bench_tree, tmp_path):
    """An ONNX exported from an older version of the checkpoint is named and refused, not timed."""
    from stylecast.benchmarks.discover import artifacts_for

    checkpoint = tmp_path / "tiny.safetensors"
    checkpoint.write_bytes((bench_tree / "models" / "tiny.safetensors").read_bytes() + b" ")
    found, _ = artifacts_for(checkpoint, bench_tree / "artifacts")
    fp32 = next(a for a in found if a.precision == "fp32")
    assert fp32.status.startswith("refused:") and "re-run stylecast export" in fp32.status


def test_bench_user_errors_are_one_line(tmp_path):
    empty = tmp_path / "models"
    empty.mkdir()
    done = run_cli("bench", "--models", str(empty), "--quick")
    assert done.returncode == 2 and done.stderr.strip().count("\n") == 0 and "no checkpoints" in done.stderr
    (tmp_path / "README.md").write_text("no markers here\n")
    done = run_cli("bench", "--models", str(empty), "--readme", str(tmp_path / "README.md"))
    assert done.returncode == 2 and "README.md" in done.stderr and "bench-results:start" in done.stderr
    bad = tmp_path / "baseline.json"
    bad.write_text("{")
    done = run_cli("bench", "--models", str(empty), "--check", str(bad))
    assert done.returncode == 2 and "baseline.json" in done.stderr and "Traceback" not in done.stderr


def test_the_int8_ceiling_is_measured_on_onnx_runtime_integer_gemm():
    """torch's int8 matmul has no fast kernel on some CPUs; the engines' own integer GEMM still sets a ceiling."""
    from stylecast.benchmarks.machine import _int8_engine_peak, ort_int8_peak

    assert ort_int8_peak(1, size=128, seconds=0.0, calls=2) > 0
    peaks = {"int8": {"error": "slower than fp32 here (1 vs 100 GFLOP/s at 256²): no ceiling"}}
    _int8_engine_peak(peaks, threads=1, seconds=0.0)
    assert peaks["int8"]["gflops"] > 0 and peaks["int8"]["source"].startswith("onnxruntime")
    assert "no ceiling" in peaks["int8"]["torch"]["error"]
    fast_torch = {"int8": {"gflops": 1e9, "matmul_size": 2048}}
    _int8_engine_peak(fast_torch, threads=1, seconds=0.0)
    assert fast_torch["int8"]["gflops"] == 1e9 and fast_torch["int8"]["onnxruntime_gflops"] > 0
