"""How often the latency gate cries wolf, and whether it catches a real slowdown (``make bench-gate-eval``).

False alarms: the CI gate run several times on the unchanged tree. Power: the same gate on an
export made deliberately slower (zero-weight full-resolution convs added before the output conv,
so the pixels stay exact and only latency can fail it), and against a baseline that demands 10x
the stored speedups. Each run is the real command, in its own process, as CI runs it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated

import typer

from stylecast.benchmarks.report import write_results
from stylecast.runtime.errors import StylecastError


def slowed_copy(src: Path, dest: Path, extra_flops: float, model_gflops_256: float) -> int:
    """Copy ``src`` adding zero-weight 3x3 convs (each plus a residual Add, so the output is unchanged)
    on the output conv's full-resolution input: about ``extra_flops`` times the model's FLOPs
    (``model_gflops_256`` at 256x256). Returns how many convs were added."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(src))
    graph = model.graph
    weights = {t.name: t for t in graph.initializer}
    convs = [n for n in graph.node if n.op_type == "Conv"]
    last = convs[-1]
    channels = numpy_helper.to_array(weights[last.input[1]]).shape[1]
    conv_gflops_256 = 2 * channels * channels * 9 * 256 * 256 / 1e9
    added = max(1, round(extra_flops * model_gflops_256 / conv_gflops_256))
    zero = numpy_helper.from_array(np.zeros((channels, channels, 3, 3), np.float32), "gate_eval_zero_w")
    graph.initializer.append(zero)
    tensor = last.input[0]
    new_nodes = []
    for i in range(added):
        conv, total = f"gate_eval_conv{i}", f"gate_eval_sum{i}"
        new_nodes += [helper.make_node("Conv", [tensor, zero.name], [conv], pads=[1, 1, 1, 1], name=conv),
                      helper.make_node("Add", [tensor, conv], [total], name=total)]
        tensor = total
    position = list(graph.node).index(last)
    last.input[0] = tensor
    for offset, node in enumerate(new_nodes):
        graph.node.insert(position + offset, node)
    onnx.checker.check_model(model)
    onnx.save(model, str(dest))
    return added


def _gate(model: Path, check: Path, artifacts: Path, out: Path) -> dict:
    """One `stylecast bench` gate run as CI runs it; its exit code, regressions and ORT speedup."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "stylecast.cli", "bench", "--quick", "--threads", "1",
                           "--models", str(model), "--artifacts", str(artifacts), "--check", str(check),
                           "--out", str(out), "--name", "gate"], capture_output=True, text=True)
    result = json.loads((out / "gate.json").read_text()) if (out / "gate.json").is_file() else {"rows": []}
    speedups = {f"{r['format']} {r['precision']} {r['engine']}": r.get("speedup") for r in result["rows"]
                if r.get("speedup") is not None}
    return {"exit": done.returncode, "seconds": round(time.perf_counter() - start, 1), "speedups": speedups,
            "regressions": [line for line in done.stdout.splitlines() if line.startswith("regression:")],
            "remeasured": sum("re-measuring" in line for line in done.stdout.splitlines()),
            "gated": "latency not gated" not in done.stdout}


def evaluate(model: Path, baselines: Path, artifacts: Path, runs: int, extra_flops: float) -> dict:
    name = model.stem
    onnx_file = artifacts / name / f"{name}.fp32.onnx"
    if not onnx_file.is_file():
        raise StylecastError(f"{onnx_file}: missing; run `make export STYLE={name}` (or make bench-check) first")
    with tempfile.TemporaryDirectory() as scratch:
        tmp = Path(scratch)
        unchanged = [_gate(model, baselines, artifacts, tmp / f"run{i}") for i in range(runs)]
        slow_dir = tmp / "slow" / name
        slow_dir.mkdir(parents=True)
        from stylecast.compress.prune import gflops
        from stylecast.train.checkpoint import load_model

        added = slowed_copy(onnx_file, slow_dir / onnx_file.name, extra_flops, gflops(load_model(model).model, 256, 256))
        for other in sorted(onnx_file.parent.glob(f"{name}.*.onnx")):  # the other exports as they are: only fp32 slows
            if other != onnx_file:
                shutil.copyfile(other, slow_dir / other.name)
        slowed = _gate(model, baselines, tmp / "slow", tmp / "slow-out")
        baseline_path = baselines
        if baselines.is_dir():
            from stylecast.benchmarks.gate import select_baseline
            from stylecast.runtime.machine import fingerprint

            baseline_path, _ = select_baseline(baselines, fingerprint())
        demanding = None
        if baseline_path is not None:
            data = json.loads(Path(baseline_path).read_text())
            for row in data["rows"].values():
                row["speedup"] *= 10
            (tmp / "demanding.json").write_text(json.dumps(data))
            demanding = _gate(model, tmp / "demanding.json", artifacts, tmp / "demanding-out")
    return {"model": str(model), "baselines": str(baselines), "baseline": str(baseline_path) if baseline_path else None,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "unchanged": unchanged,
            "slowed": {**slowed, "added_convs": added, "extra_flops": extra_flops}, "demanding_10x": demanding}


def markdown(report: dict) -> str:
    runs = report["unchanged"]
    alarms = sum(r["exit"] != 0 for r in runs)
    lines = [f"Gate evaluation of {report['model']} against {report['baseline'] or 'no baseline of this class'} "
             f"({report['created']}).", "",
             f"- **False alarms: {alarms} of {len(runs)}** gate runs on the unchanged tree failed "
             f"({sum(r['remeasured'] for r in runs)} re-measurements were needed).",
             "", "| run | exit | seconds | speedups (same-run, vs eager fp32) |", "|---|---|---|---|"]
    for i, run in enumerate(runs, 1):
        figures = ", ".join(f"{k} {v:.2f}x" for k, v in run["speedups"].items() if not k.endswith("eager"))
        lines.append(f"| {i} | {run['exit']} | {run['seconds']} | {figures} |")
    slowed = report["slowed"]
    lines += ["", f"- **Power, slower graph:** {slowed['added_convs']} zero-weight full-resolution convs added to the "
                  f"fp32 export (about +{slowed['extra_flops']:.0%} conv FLOPs, output unchanged): exit "
                  f"{slowed['exit']}" + (f"; {slowed['regressions'][0]}" if slowed["regressions"] else "")]
    demanding = report["demanding_10x"]
    if demanding is not None:
        lines.append(f"- **Power, 10x baseline:** the same baseline with every speedup x10: exit {demanding['exit']}, "
                     f"{len(demanding['regressions'])} regressions named")
    return "\n".join(lines) + "\n"


def main(
    model: Annotated[Path, typer.Option(help="The gated checkpoint.")] = Path("models/wave.safetensors"),
    baselines: Annotated[Path, typer.Option(help="Baseline folder (or one file), as make bench-check uses.")] =
        Path("benchmarks/baselines"),
    artifacts: Annotated[Path, typer.Option(help="Where the model's fp32 export is.")] = Path("artifacts"),
    runs: Annotated[int, typer.Option(help="Gate runs on the unchanged tree.")] = 5,
    extra_flops: Annotated[float, typer.Option(help="FLOPs added to the slowed graph, relative to the model's.")] = 1.0,
    out: Annotated[Path, typer.Option(help="Report stem: <out>.json and <out>.md.")] = Path("benchmarks/results/gate"),
) -> None:
    try:
        report = evaluate(model, baselines, artifacts, runs, extra_flops)
    except StylecastError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    write_results(out, report, markdown(report))
    typer.echo(markdown(report) + f"wrote {out}.json and .md")


if __name__ == "__main__":
    typer.run(main)
