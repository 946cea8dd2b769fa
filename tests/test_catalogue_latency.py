"""`make catalogue-latency` on tiny random-init nets (width 4, 3 styles, 64 px, one round): a row per resolution,
precision, backend and multi-style graph (the style folded in, judged; the general one, shown) with a positive
paired ratio, serve's memory with one, the multi-style and N models, and the report's lines; and the inputs it
refuses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stylecast.benchmarks.studies.catalogue_latency import Study, checked_pair, random_checkpoints, run
from stylecast.benchmarks.timing import Policy
from stylecast.runtime.errors import StylecastError
from stylecast.train.checkpoint import save_model
from stylecast.train.model import ArchConfig, TransformerNet

ONE_ROUND = Policy(warmup_calls=1, warmup_s=0.0, min_rounds=1, max_rounds=1, budget_s=0.0)


@pytest.mark.slow
def test_tiny_nets_give_a_row_per_cell_and_serve_memory_ratios(tmp_path: Path, photos: Path):
    study = Study(width=4, styles=3, work=tmp_path / "work", photos=photos, calibration_count=2,
                  calibration_size=(64, 64), parity_sizes=((64, 64),), resolutions=["64"], precisions=["fp32", "int8"],
                  backends=["onnxruntime"], threads=1, policy=ONE_ROUND, out=tmp_path / "catalogue" / "latency")
    record = run(study)
    assert [(r["resolution"], r["precision"], r["backend"], r["graph"]) for r in record["latency"]] == [
        ("64x64", precision, "ONNX Runtime", graph) for precision in ("fp32", "int8") for graph in ("folded", "general")]
    for row in record["latency"]:
        assert "error" not in row, row
        assert row["ratio"] > 0 and row["single_ms"] > 0 and row["multi_ms"] > 0 and row["rounds"] == 1
        assert row.get("passed", "not judged") == ((row["ratio"] <= 1.05) if row["graph"] == "folded" else "not judged")
    assert [r["precision"] for r in record["memory"]] == ["fp32", "int8"]
    for row in record["memory"]:
        assert row["copies"] == 3 and row["multi_vs_single"] > 0 and row["multi_vs_copies"] > 0
        assert row["copies_mib"] >= row["single_mib"] * 0.9  # three sessions take at least about one's memory
    assert record["styles"] == ["style1", "style2", "style3"] and record["machine"]["threads"] == 1
    assert json.loads((tmp_path / "catalogue" / "latency.json").read_text())["latency"] == record["latency"]
    text = (tmp_path / "catalogue" / "latency.md").read_text()
    assert text.startswith("# One 3-style net vs single-style nets")
    assert "Targets: latency ratio ≤ 1.05× in every folded row" in text and "Regenerate: `make catalogue-latency`" in text
    rows = [line for line in text.splitlines() if line.startswith("| 64x64 |")]
    assert len(rows) == 4 and sum("| style folded (`stylize --style`) |" in line for line in rows) == 2
    assert sum(line.endswith("× | – |") and "| general (serve's mixed batches) |" in line for line in rows) == 2
    assert sum(line.startswith(("| fp32 |", "| int8 |")) for line in text.splitlines()) == 2
    assert "- Latency, style folded (`stylize --style`): " in text and "- Latency, general (serve's mixed batches): " in text
    assert "- Memory, int8: the 3-style model takes " in text


def test_bad_inputs_are_refused_naming_the_fix(tmp_path: Path):
    with pytest.raises(StylecastError, match="give --styles 2 or more"):
        Study(styles=1)
    with pytest.raises(StylecastError, match="give both --single and --multi"):
        Study(single=tmp_path / "wave.safetensors")
    with pytest.raises(StylecastError, match="--backend tensorrt: choose from onnxruntime, openvino"):
        Study(backends=["tensorrt"])
    with pytest.raises(StylecastError, match="--resolution"):
        Study(resolutions=["huge"])
    single, multi = random_checkpoints(tmp_path, 4, 2)
    wider = tmp_path / "wide.safetensors"
    save_model(wider, TransformerNet(ArchConfig(width=8, styles=2)), {"style": "wide", "styles": '["a", "b"]'})
    with pytest.raises(StylecastError, match="differ in architecture beyond their styles"):
        checked_pair(single, wider)
    with pytest.raises(StylecastError, match="give a multi-style net"):
        checked_pair(single, single)
    with pytest.raises(StylecastError, match="give a single-style net"):
        checked_pair(multi, multi)
