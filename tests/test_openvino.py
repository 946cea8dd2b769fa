"""The OpenVINO backend on tiny in-memory exports: load, run, parity with ONNX Runtime, shape cache, errors,
the precision probe's cache, export parity and its bench rows. Fast: the graphs come from TorchScript export
of a width-4 net (about a second), not from `stylecast train` + `stylecast export`."""

from __future__ import annotations

import io
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("openvino")

from stylecast.runtime.backends import load_backend  # noqa: E402
from stylecast.runtime.backends import openvino as ovb  # noqa: E402
from stylecast.runtime.errors import StylecastError  # noqa: E402
from stylecast.runtime.formats import PRECISIONS, companion_path, kind_of  # noqa: E402
from stylecast.runtime.metrics import psnr  # noqa: E402

DATA = Path(__file__).parent / "data"


def _stamped(model, loaded, precision: str, dest: Path) -> Path:  # noqa: ANN001 - onnx.ModelProto, LoadedModel
    from stylecast.export import to_onnx

    to_onnx.set_metadata(model, to_onnx.export_metadata(loaded, precision))
    to_onnx.save_onnx(model, dest)
    return dest


@pytest.fixture(scope="session")
def tiny_exports(tmp_path_factory) -> dict[str, Path]:
    """models/tiny.safetensors and artifacts/tiny/tiny.{fp32,fp16,int8}.onnx, as `stylecast export` names them."""
    import onnx
    import torch

    from stylecast.export import to_fp16, to_int8, to_onnx
    from stylecast.runtime.formats import INPUT, OUTPUT
    from stylecast.train.checkpoint import load_model, save_model
    from stylecast.train.model import ArchConfig, TransformerNet

    root = tmp_path_factory.mktemp("ov")
    (root / "models").mkdir()
    checkpoint = root / "models" / "tiny.safetensors"
    torch.manual_seed(0)
    save_model(checkpoint, TransformerNet(ArchConfig(width=4, res_blocks=1)), {"style": "tiny", "steps": "0"})
    loaded = load_model(checkpoint)
    buffer = io.BytesIO()
    axes = {0: "batch", 2: "height", 3: "width"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(loaded.model, (torch.rand(1, 3, 64, 64) * 255,), buffer, dynamo=False, opset_version=18,
                          input_names=[INPUT], output_names=[OUTPUT], dynamic_axes={INPUT: axes, OUTPUT: axes})
    out = root / "artifacts" / "tiny"
    fp32 = _stamped(to_onnx.simplify(onnx.load_from_string(buffer.getvalue())), loaded, "fp32", out / "tiny.fp32.onnx")
    _stamped(to_fp16.convert_fp16(onnx.load(str(fp32))), loaded, "fp16", out / "tiny.fp16.onnx")
    photos = sorted((DATA / "photos").glob("*.jpg"))
    to_int8.quantize_int8(fp32, root / "int8.onnx", photos, (64, 64), "minmax", [])
    _stamped(onnx.load(str(root / "int8.onnx")), loaded, "int8", out / "tiny.int8.onnx")
    return {"root": root, "checkpoint": checkpoint, **{p: out / f"tiny.{p}.onnx" for p in ("fp32", "fp16", "int8")}}


@pytest.fixture(autouse=True)
def _own_cache(tmp_path_factory, monkeypatch):
    """One probe cache for these tests, not the user's."""
    monkeypatch.setenv("STYLECAST_CACHE", str(tmp_path_factory.getbasetemp() / "ov-cache"))


def _photo_batch(height: int = 61, width: int = 67) -> np.ndarray:
    from stylecast.runtime.images import fit, load_image

    rgb = load_image(DATA / "photos" / "chelsea.jpg").rgb
    return fit(rgb, height, width).transpose(2, 0, 1)[None].astype(np.float32)


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_openvino_agrees_with_onnxruntime_within_the_floor(tiny_exports, precision):
    """The same file on both engines: the precision's parity floor holds between them (odd size on purpose)."""
    batch = _photo_batch()
    ov = load_backend(tiny_exports[precision], backend="openvino", threads=1)
    ort = load_backend(tiny_exports[precision], threads=1)
    got, want = ov.run(batch), ort.run(batch)
    assert got.shape == want.shape == batch.shape and got.dtype == np.float32
    assert got.min() >= 0.0 and got.max() <= 255.0
    assert psnr(want[0].transpose(1, 2, 0), got[0].transpose(1, 2, 0)) >= PRECISIONS[precision].psnr_floor_db
    assert ov.metadata == ort.metadata and ov.metadata["precision"] == precision
    assert ov.describe() == "openvino CPU, f32" and ov.name == "openvino"  # the graph's precision, by default


def test_onnx_files_have_two_backends_and_ort_stays_default(tiny_exports):
    assert kind_of(".onnx").backends == ("onnxruntime", "openvino") and kind_of(".onnx").backend == "onnxruntime"
    assert load_backend(tiny_exports["fp32"]).name == "onnxruntime"
    with pytest.raises(StylecastError, match="no backend for '.safetensors' files with --backend openvino"):
        load_backend(tiny_exports["checkpoint"], backend="openvino")
    with pytest.raises(StylecastError, match="OpenVINO device 'NOPE' not available here; available: CPU"):
        load_backend(tiny_exports["fp32"], backend="openvino", provider=["NOPE"])
    with pytest.raises(StylecastError, match="--openvino-precision bf16: sets the CPU's inference precision; the AUTO"):
        load_backend(tiny_exports["fp32"], backend="openvino", provider=["AUTO"], openvino_precision="bf16")


def test_stylizer_runs_on_openvino(tiny_exports):
    from stylecast.runtime.stylizer import Stylizer

    rgb = _photo_batch(40, 52)[0].transpose(1, 2, 0).astype(np.uint8)
    ov, ort = Stylizer(tiny_exports["fp32"], backend="openvino"), Stylizer(tiny_exports["fp32"])
    assert np.abs(ov(rgb).astype(int) - ort(rgb).astype(int)).max() <= 1 and ov.style == "tiny"


def test_compiled_models_are_cached_per_shape_least_recently_used_first_out(tiny_exports, monkeypatch):
    monkeypatch.setattr(ovb, "SHAPE_CACHE", 2)
    backend = load_backend(tiny_exports["fp32"], backend="openvino", threads=1)
    first = backend.request((1, 3, 32, 32))
    assert backend.request((1, 3, 32, 32)) is first  # no recompilation for a shape seen before
    backend.run(np.zeros((1, 3, 40, 48), np.float32))
    backend.request((1, 3, 32, 32))  # used again: now the most recent
    backend.run(np.zeros((2, 3, 24, 24), np.float32))
    assert list(backend._compiled) == [((-1, 3, 32, 32),), ((-1, 3, 24, 24),)]  # keyed by every input's size


def test_batches_of_one_image_size_share_one_compiled_model(tiny_exports):
    backend = load_backend(tiny_exports["fp32"], backend="openvino", threads=1)
    batch = np.concatenate([_photo_batch(32, 40), _photo_batch(32, 40)[..., ::-1], 255 - _photo_batch(32, 40)])
    together = backend.run(batch)
    alone = [backend.run(batch[i:i + 1]) for i in range(3)]
    assert len(backend._compiled) == 1
    assert np.abs(together - np.concatenate(alone)).max() < 1e-3


def test_missing_openvino_is_one_line_error(tiny_exports, monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino -> ImportError
    with pytest.raises(StylecastError) as caught:
        load_backend(tiny_exports["fp32"], backend="openvino")
    assert str(caught.value) == "OpenVINO is not installed: pip install 'stylecast[openvino]'"


def test_foreign_and_broken_files_are_one_line_errors(tiny_exports, tmp_path):
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"\x08\x07 not a graph")
    with pytest.raises(StylecastError, match="broken.onnx"):
        load_backend(broken, backend="openvino")


class _Core:
    """Stands in for ov.Core where only the CPU's capability list matters."""

    def __init__(self, capabilities: list[str]) -> None:
        self.capabilities = capabilities

    def get_property(self, device: str, name: str) -> list[str]:
        assert (device, name) == ("CPU", "OPTIMIZATION_CAPABILITIES")
        return self.capabilities


def test_cpu_precision_is_the_graphs_unless_bf16_is_asked_for(tmp_path, monkeypatch):
    """OpenVINO's own default lowers f32 to bf16 wherever the CPU has bf16 instructions (an fp32 export then fails
    its 60 dB floor): the backend asks for f32 unless told otherwise, and bf16 is refused where it would not run."""
    ov = ovb.import_openvino()
    hint, reason = ovb.cpu_precision(ov, _Core(["FP32", "BF16"]), "f32", 1)
    assert hint == "f32" and "the graph's own precision" in reason
    assert ovb.cpu_precision(ov, _Core(["FP32", "BF16"]), "bf16", 1)[0] == "bf16"
    with pytest.raises(StylecastError, match="no bf16 kernels on this CPU.*use f32"):
        ovb.cpu_precision(ov, _Core(["FP32", "INT8"]), "bf16", 1)
    with pytest.raises(StylecastError, match="--openvino-precision fp8: choose from f32, bf16, auto"):
        ovb.cpu_precision(ov, _Core(["FP32"]), "fp8", 1)
    monkeypatch.setenv("STYLECAST_CACHE", str(tmp_path))
    assert ovb.cpu_precision(ov, _Core(["FP32"]), "auto", 1)[0] == "f32"  # no kernels: nothing to time


def test_precision_hint_is_measured_once_per_machine_and_cached(tiny_exports, tmp_path, monkeypatch):
    monkeypatch.setenv("STYLECAST_CACHE", str(tmp_path))
    first = load_backend(tiny_exports["fp32"], backend="openvino", threads=1, openvino_precision="auto")
    assert first.hint in ("f32", "bf16") and "(cached probe)" not in first.hint_reason
    stored = json.loads((tmp_path / "precision-probe.json").read_text())
    (key,) = stored
    assert key.startswith("openvino-cpu-") and stored[key]["fingerprint"]["cores"] >= 1
    stored[key].update(hint="bf16", reason="bf16 ran at 1.50x the speed of f32")  # as on a CPU where it is faster
    (tmp_path / "precision-probe.json").write_text(json.dumps(stored))
    again = load_backend(tiny_exports["fp32"], backend="openvino", threads=1, openvino_precision="auto")
    assert again.hint == "bf16" and again.hint_reason.endswith("(cached probe)")
    assert ovb.compile_config("CPU", 2, "f32") == {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": "2",
                                                   "INFERENCE_PRECISION_HINT": "f32"}
    assert ovb.compile_config("GPU", 2, None) == {"PERFORMANCE_HINT": "LATENCY"}


def test_export_report_gets_openvino_parity(tiny_exports):
    from stylecast.export import parity
    from stylecast.export.pipeline import other_backends_parity
    from stylecast.train.checkpoint import load_model

    reference = parity.Reference(load_model(tiny_exports["checkpoint"]).model, parity.parity_images(DATA / "photos"))
    for precision in ("fp32", "int8"):
        entry = other_backends_parity(reference, tiny_exports[precision], precision, ((48, 48), (37, 53)), lambda _: None)
        assert entry["openvino"]["passed"], entry
        assert [row["height"] for row in entry["openvino"]["parity"]] == [48, 37]
        assert entry["openvino"]["precision_hint"] == "f32"


def test_bench_has_openvino_rows_for_every_precision(tiny_exports):
    from stylecast.benchmarks import report, suite
    from stylecast.benchmarks.timing import Policy

    root = tiny_exports["root"]
    config = suite.BenchConfig(models=[tiny_exports["checkpoint"]], artifacts=root / "artifacts", photos=DATA / "photos",
                               resolutions=[suite.Resolution(48, 48)], threads=1, peak_seconds=0.05,
                               policy=Policy(warmup_calls=1, warmup_s=0.0, min_rounds=3, max_rounds=3, budget_s=0.0))
    result = suite.run(config, log=lambda _: None)
    rows = {(r["format"], r["precision"], r["engine"]): r for r in result["rows"]}
    for precision in ("fp32", "fp16", "int8"):
        row = rows["OpenVINO", precision, "CPU"]
        assert row["status"] == "ok" and row["samples"] == 3, row
        assert row["speedup"] > 0 and row["speedup_min"] > 0 and row["min_ms"] <= row["p50_ms"]
        assert row["psnr_min"] >= PRECISIONS[precision].psnr_floor_db and row["peak"] in result["peaks_gflops"]
        assert rows["ONNX Runtime", precision, "CPU"]["status"] == "ok"
    lowered = {(r["precision"], r["status"]) for r in result["rows"] if r["engine"] == "CPU bf16"}
    no_kernels = "skipped: OpenVINO runs no bf16 kernels on this CPU"  # else the files' float ops in bf16, own rows:
    assert lowered in ({("bf16", "ok"), ("int8", "ok")}, {("bf16", no_kernels), ("int8", no_kernels)}), lowered
    for row in (r for r in result["rows"] if r["engine"] == "CPU bf16" and r["status"] == "ok"):
        assert row["psnr_min"] >= PRECISIONS[row["precision"]].psnr_floor_db  # an fp32 file's: the bf16 floor
    assert {"onnxruntime", "openvino"} <= set(result["settings"])  # how each backend of the table was opened
    assert "idle-thread spinning off" in result["settings"]["openvino"]
    text = report.markdown(result)
    assert "| tiny | 48x48 | OpenVINO | int8 | CPU | ok |" in text and "fastest within the parity floor:" in text


def test_tiled_statistics_and_tiles_agree_across_backends_and_precisions(tiny_exports):
    """The statistics pass and the apply pass give the same on OpenVINO as on ONNX Runtime, at each precision, and
    each precision's tiled graphs compute its own single pass on a whole image."""
    from stylecast.export import norm_graphs, to_onnx
    from stylecast.runtime.stylizer import Stylizer
    from stylecast.runtime.tiling import stats_patches, stylize_tiled

    rgb = np.asarray(Image.open(DATA / "photos" / "chelsea.jpg").convert("RGB").resize((600, 400)))
    for precision in ("fp32", "fp16", "int8"):
        norm_graphs.write_companions(tiny_exports[precision], to_onnx.save_onnx)
        ort, ov = (Stylizer(tiny_exports[precision], backend=name, threads=1) for name in ("onnxruntime", "openvino"))
        ort_stats, ov_stats = ort.tile_stats(rgb)[0], ov.tile_stats(rgb)[0]
        assert np.allclose(ort_stats, ov_stats, rtol=1e-2, atol=1e-2), precision
        tiles = [stylize_tiled(lambda part, s=s, st=st: s.stylize_batch([part], None, [st])[0], rgb, 256, 32)
                 for s, st in ((ort, ort_stats), (ov, ov_stats))]
        assert np.abs(tiles[0].astype(int) - tiles[1].astype(int)).max() <= 2, precision
        apply, = ort.apply_graphs()
        batch = rgb.transpose(2, 0, 1)[None].astype(np.float32)
        with load_backend(companion_path(tiny_exports[precision], "stats")) as stats:
            assert np.abs(apply.run(batch, stats.run(batch)) - ort.forward(batch)).max() < 0.5, precision
        assert stats_patches(rgb, "mosaic").shape[0] == 16  # 4x4: the smallest grid, for a small photo


def test_serve_on_openvino_answers_v1_and_v2_as_the_backend_computes(tiny_onnx):
    """`stylecast serve --backend openvino`: the same server on OpenVINO's compiled models, answers equal to the
    backend called directly (v2) and to the same image through a Stylizer on OpenVINO (v1)."""
    import httpx

    from stylecast.benchmarks.load.server import running_server
    from stylecast.runtime.stylizer import Stylizer

    rgb = np.asarray(Image.open(Path(__file__).parent / "data" / "photos" / "chelsea.jpg").convert("RGB"))
    png = io.BytesIO()
    Image.fromarray(rgb).save(png, "PNG")
    tensor = rgb.transpose(2, 0, 1)[None].astype(np.float32)
    with running_server([tiny_onnx], "--backend", "openvino") as server, Stylizer(tiny_onnx, backend="openvino") as ref:
        answer = httpx.post(server.url + "/v1/stylize?format=png", content=png.getvalue(), timeout=60)
        assert answer.status_code == 200, answer.text
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(answer.content))), ref(rgb))
        body = {"inputs": [{"name": "image", "datatype": "FP32", "shape": list(tensor.shape),
                            "data": tensor.ravel().tolist()}]}
        v2 = httpx.post(server.url + "/v2/models/tiny_fp32/infer", json=body, timeout=60)
        assert v2.status_code == 200, v2.text
        out = np.asarray(v2.json()["outputs"][0]["data"], np.float32).reshape(tensor.shape)
        assert np.abs(out - ref.forward(tensor)).max() < 1e-3
        assert "openvino" in httpx.get(server.url + "/v1/styles").json()[0]["backend"].lower()
