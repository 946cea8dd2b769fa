"""`make serve-load` in small: the Locust-driven benchmark in this process against real servers on the tiny model,
its counts checked against the servers' /metrics, its latencies and overhead ratios sane; and Triton's
perf_analyzer against the same server where it is installed."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from stylecast.benchmarks.load.client import request_counts, scrape
from stylecast.benchmarks.load.perf_analyzer import perf_analyzer, version
from stylecast.benchmarks.load.run import main
from stylecast.benchmarks.load.server import running_server
from stylecast.runtime.errors import StylecastError
from stylecast.runtime.formats import triton_model_name

from .conftest import DATA

# What `make perf-analyzer` installs.
PERF_ANALYZER = Path(__file__).resolve().parent.parent / ".venv-perf" / "bin" / "perf_analyzer"


def test_locust_run_agrees_with_metrics_and_times_the_overhead(tiny_onnx, tmp_path):
    """Two users per route for two seconds, batching on and off: every request a 200 that /metrics counted too."""
    out = tmp_path / "serve-load"
    code = main(["--model", str(tiny_onnx), "--photo", str(DATA / "photos" / "chelsea.jpg"), "--levels", "2",
                 "--seconds", "2", "--overhead-rounds", "3", "--out", str(out)])
    assert code == 0
    report = json.loads(out.with_suffix(".json").read_text())
    assert [run["batching"] for run in report["runs"]] == ["on", "off"]
    for run in report["runs"]:
        assert run["exit_code"] == 0 and run["peak_rss_mib"] > 0
        assert [(row["route"], row["concurrency"]) for row in run["rows"]] == [("v1", 2), ("v2", 2)]
        for row in run["rows"]:
            assert row["ok"] > 0 and row["client_codes"] == {"200": row["ok"]}, row
            assert row["metrics_agree"] and row["server_codes"] == row["client_codes"], row
            assert 0 < row["p50_ms"] <= row["p95_ms"] <= row["p99_ms"], row
            # Two users back to back for about two seconds: throughput is what they got through in that time.
            assert row["seconds"] >= 2 and row["throughput_per_s"] == pytest.approx(row["ok"] / row["seconds"], rel=0.1)
        for cost in run["overhead"].values():
            assert cost["server_ms"] > 0 and cost["direct_ms"] > 0 and math.isfinite(cost["ratio"]) and cost["ratio"] > 0
    text = out.with_suffix(".md").read_text()
    assert "| tiny.fp32.onnx | off | v2 | 2 |" in text and "## The server's overhead" in text
    assert out.with_suffix(".png").stat().st_size > 0


def test_unusable_perf_analyzer_stops_the_run_before_any_server(tmp_path, capsys):
    """A perf_analyzer that cannot start is named at once, not after an hour of load."""
    assert main(["--model", str(tmp_path / "absent.onnx"), "--perf-analyzer", str(tmp_path / "perf_analyzer"),
                 "--out", str(tmp_path / "serve-load")]) == 2
    assert "no such program" in capsys.readouterr().err
    assert not (tmp_path / "serve-load.json").exists()


@pytest.mark.skipif(not PERF_ANALYZER.is_file(), reason="Triton's perf_analyzer is not installed: make perf-analyzer")
def test_perf_analyzer_measures_the_v2_route(tiny_onnx):
    """perf_analyzer reads the server's model config and measures binary infers; a full queue stops it, said so."""
    with running_server([tiny_onnx], "--max-batch", "1", "--max-queue-mp", "0.2") as server:
        name = triton_model_name(tiny_onnx)
        row = perf_analyzer(str(PERF_ANALYZER), server.url, name, (256, 256), 1, 20)
        busy = perf_analyzer(str(PERF_ANALYZER), server.url, name, (256, 256), 16, 64)
        refused = request_counts(scrape(server.url), "/v2/models/{name}/infer")[503]
    assert "Perf Analyzer" in version(str(PERF_ANALYZER))
    assert "error" not in row, row
    assert row["infer_per_s"] > 0 and 0 < row["p50_ms"] <= row["p95_ms"] <= row["p99_ms"]
    assert "had error" in busy["error"] and refused > 0, busy


def test_perf_analyzer_that_is_not_there_is_named():
    with pytest.raises(StylecastError, match="make perf-analyzer"):
        version("no-such-perf-analyzer")


def test_ray_serve_overhead_pairs_bursts_of_two_servers(tiny_onnx):
    """The measurement of `serve --ray` against `serve`, on two plain servers: every burst is answered, each level
    and route gets a row, and the ratio is Ray's seconds over local's."""
    import numpy as np

    from stylecast.benchmarks.load import ray_overhead
    from stylecast.benchmarks.load.client import calls

    rgb = np.random.default_rng(0).integers(0, 256, (48, 48, 3), np.uint8)
    with running_server([tiny_onnx]) as local, running_server([tiny_onnx]) as other:
        rows = ray_overhead.measure({"local": local, "ray": other}, calls(tiny_onnx, rgb), rounds=2, per_client=2)
    assert [(r["route"], r["concurrency"]) for r in rows] == [("v1", 1), ("v1", 8), ("v2", 1), ("v2", 8)]
    for row in rows:
        assert row["images"] == row["concurrency"] * 2 and row["ratio"] > 0
        assert row["local_images_per_s"] > 0 and row["ray_images_per_s"] > 0
    text = ray_overhead.markdown({"size": 48, "machine": "m", "model": str(tiny_onnx), "threads": 1, "rounds": 2,
                                  "ray_start_s": 9.0, "local_start_s": 1.0, "rows": rows})
    assert text.count("\n| v") == 4 and "Ray's overhead" in text
