"""`make slim-speedup`: the verdict takes the worst of the separate runs, and stale exports are refused."""

import json
from pathlib import Path

import pytest

from stylecast.benchmarks.studies.slim_speedup import int8_export, markdown, summarise
from stylecast.runtime.errors import StylecastError
from stylecast.train.checkpoint import save_model
from stylecast.train.model import ArchConfig, TransformerNet


def _cell(eager: float, slim_ov: float, slim_ort: float, ov: float, ort: float) -> dict:
    def row(ms: float, base: float | None = None) -> dict:
        return {"p50_ms": ms, "min_ms": ms * 0.9, **({"speedup": base / ms} if base else {})}

    return {"teacher/PyTorch/fp32/eager": row(eager), "wave-slim/OpenVINO/int8/CPU": row(slim_ov, eager),
            "wave-slim/ONNX Runtime/int8/CPU": row(slim_ort, eager), "wave/OpenVINO/int8/CPU": row(ov, eager),
            "wave/ONNX Runtime/int8/CPU": row(ort, eager)}


def test_the_worst_run_decides_and_the_fastest_engine_is_named():
    runs = [{"512x512": _cell(1200, 100, 150, 300, 480)}, {"512x512": _cell(1000, 110, 105, 310, 420)}]
    summary = summarise(runs, "wave", "wave-slim")["512x512"]
    assert [r["fastest"] for r in summary["runs"]] == ["OpenVINO", "ONNX Runtime"]
    assert summary["worst_speedup"] == pytest.approx(1000 / 105) and not summary["meets"]
    assert summary["worst_teacher_vs_default"] == {"OpenVINO": pytest.approx(420 / 310)}
    assert summary["vs_default_meets"] == {"OpenVINO": False}
    text = markdown(summarise(runs, "wave", "wave-slim"), "wave", "wave-slim", 2, 2)
    assert "worst run 9.52x: misses the ≥10x target" in text and text.count("| 512x512 |") == 2
    assert "wave OpenVINO int8 vs ONNX Runtime int8, worst run 1.35x: misses ≥1.5x" in text


def test_an_export_of_other_weights_is_refused(tmp_path: Path):
    checkpoint = tmp_path / "models" / "tiny.safetensors"
    checkpoint.parent.mkdir()
    save_model(checkpoint, TransformerNet(ArchConfig(width=8, res_blocks=1)), {"style": "tiny"})
    with pytest.raises(StylecastError, match="make export STYLE=tiny"):
        int8_export(checkpoint, tmp_path / "artifacts")


def test_int8_graphs_compares_the_last_conv_fp32_and_int8_on_both_engines(tmp_path: Path, photos, calibration_photos):
    """`make int8-graphs` end to end on a tiny net: the exported int8 graph's fp32 convs are read from the graph,
    the variant quantizes the last one too, and both are timed and checked on OpenVINO and ONNX Runtime."""
    pytest.importorskip("openvino", reason="OpenVINO not installed: pip install 'stylecast[openvino]'")
    from stylecast.benchmarks.studies.int8_graphs import GRAPHS, main
    from stylecast.export.pipeline import ExportRequest, run_export
    from stylecast.export.precisions import Int8Settings
    from stylecast.export.to_int8 import fp32_conv_names

    checkpoint = tmp_path / "models" / "tiny.safetensors"
    checkpoint.parent.mkdir()
    save_model(checkpoint, TransformerNet(ArchConfig(width=8, res_blocks=1)), {"style": "tiny"})
    run_export(ExportRequest(checkpoint=checkpoint, out_dir=tmp_path / "artifacts" / "tiny", precisions=["int8"],
                             parity_images=photos, int8=Int8Settings(calibration_photos, 4, (64, 64), "minmax",
                                                                     fp32_leading=1),
                             allow_below_floor=frozenset({"int8"})), log=lambda _: None)
    shipped = tmp_path / "artifacts" / "tiny" / "tiny.int8.onnx"
    assert len(fp32_conv_names(shipped)) == 2  # the first conv and the last
    out = tmp_path / "int8-graphs"
    main(["--model", str(checkpoint), "--artifacts", str(tmp_path / "artifacts"), "--calibration-images",
          str(calibration_photos), "--photos", str(photos), "--resolution", "64", "--threads", "1", "--out", str(out)])
    record = json.loads(out.with_suffix(".json").read_text())
    cell = record["latency"]["64x64"]
    for name in GRAPHS:
        assert all(cell[f"{name}/{fmt}/int8/CPU"]["p50_ms"] > 0 for fmt in ("OpenVINO", "ONNX Runtime"))
        assert set(record["parity_db"][name]) == {"OpenVINO", "ONNX Runtime"}
    assert record["fp32_leading"] == 1 and "| 64x64 | last conv int8 |" in out.with_suffix(".md").read_text()
