"""`make slim-speedup`: the verdict takes the worst of the separate runs, and stale exports are refused."""

from pathlib import Path

import pytest

from stylecast.benchmarks.slim_speedup import int8_export, markdown, summarise
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
    assert summary["worst_teacher_openvino_vs_ort"] == pytest.approx(420 / 310) and not summary["openvino_meets"]
    text = markdown(summarise(runs, "wave", "wave-slim"), "wave", "wave-slim", 2, 2)
    assert "worst run 9.52x: misses the ≥10x target" in text and text.count("| 512x512 |") == 2


def test_an_export_of_other_weights_is_refused(tmp_path: Path):
    checkpoint = tmp_path / "models" / "tiny.safetensors"
    checkpoint.parent.mkdir()
    save_model(checkpoint, TransformerNet(ArchConfig(width=8, res_blocks=1)), {"style": "tiny"})
    with pytest.raises(StylecastError, match="make export STYLE=tiny"):
        int8_export(checkpoint, tmp_path / "artifacts")
