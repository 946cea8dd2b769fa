"""Does the shipped student hold its speed-up? The slim model's deployed int8 engines against the teacher's
PyTorch eager fp32, in the same interleaved rounds, over several separate runs (fresh processes).

One run is one process: per resolution, one interleaved cell of the teacher's eager fp32, the teacher's int8
export and the slim model's int8 export, each on OpenVINO and ONNX Runtime (students_latency.measure). The
report quotes per run the median of same-round ratios, and the worst run, since a claim must hold in every run.

    python -m stylecast.benchmarks.studies.slim_speedup --teacher models/wave.safetensors --slim models/wave-slim.safetensors
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from stylecast.benchmarks.report import write_results
from stylecast.benchmarks.studies.students_latency import INT8_ENGINES, measure
from stylecast.benchmarks.suite import Resolution
from stylecast.export.parity import parity_images
from stylecast.runtime.artifacts import onnx_metadata, sha256_file
from stylecast.runtime.errors import StylecastError
from stylecast.runtime.machine import fingerprint, usable_cores
from stylecast.train.checkpoint import load_model

TARGET = 10.0  # the bar: the slim model's fastest deployed path vs the teacher's eager fp32
OPENVINO_OVER_ORT = 1.5  # and OpenVINO int8 of the teacher vs ONNX Runtime int8 of the teacher


def int8_export(checkpoint: Path, artifacts: Path) -> Path:
    """The model's shipped int8 export, refused if it was made from other weights."""
    path = artifacts / checkpoint.stem / f"{checkpoint.stem}.int8.onnx"
    if not path.is_file():
        raise StylecastError(f"{path}: no int8 export; run `make export STYLE={checkpoint.stem}` first")
    if onnx_metadata(path).get("source_sha256") != sha256_file(checkpoint):
        raise StylecastError(f"{path}: exported from other weights than {checkpoint}; "
                             f"run `make export STYLE={checkpoint.stem}` again")
    return path


def one_run(teacher: Path, slim: Path, artifacts: Path, photos: Path, resolutions: list[str], threads: int) -> dict:
    torch.set_num_threads(threads)
    loaded = load_model(teacher)
    files = {teacher.stem: int8_export(teacher, artifacts), slim.stem: int8_export(slim, artifacts)}
    photo = parity_images(photos, limit=1)[0]
    return {Resolution.parse(text).label: measure(loaded, files, Resolution.parse(text), photo, threads)
            for text in resolutions}


def summarise(runs: list[dict], teacher: str, slim: str) -> dict:
    """Per resolution: each run's figures, the slim model's fastest engine and the worst run's ratios."""
    out = {}
    for res in runs[0]:
        per_run = []
        for run in runs:
            cell = run[res]
            engines = {fmt: cell[f"{slim}/{fmt}/int8/CPU"] for fmt in INT8_ENGINES}
            fastest = min((f for f in engines if "speedup" in engines[f]), key=lambda f: engines[f]["p50_ms"])
            ov, ort = cell[f"{teacher}/OpenVINO/int8/CPU"], cell[f"{teacher}/ONNX Runtime/int8/CPU"]
            per_run.append({"eager_ms": cell["teacher/PyTorch/fp32/eager"]["p50_ms"], "engines": engines,
                            "fastest": fastest, "speedup": engines[fastest]["speedup"],
                            "teacher_openvino_vs_ort": ort["p50_ms"] / ov["p50_ms"],
                            "teacher_int8": {"OpenVINO": ov, "ONNX Runtime": ort}})
        worst = min(r["speedup"] for r in per_run)
        worst_ov = min(r["teacher_openvino_vs_ort"] for r in per_run)
        out[res] = {"runs": per_run, "worst_speedup": worst, "meets": worst >= TARGET,
                    "worst_teacher_openvino_vs_ort": worst_ov, "openvino_meets": worst_ov >= OPENVINO_OVER_ORT}
    return out


def markdown(summary: dict, teacher: str, slim: str, threads: int, runs: int) -> str:
    fp = fingerprint()
    lines = [f"# {slim}: deployed speed-up over {teacher}'s PyTorch eager fp32 ({time.strftime('%Y-%m-%d')})", "",
             f"{fp['cpu']} ({', '.join(fp['features']) or 'no AVX2'}), {threads} thread(s), batch 1, {runs} separate "
             "runs (one process each). In every run and resolution one interleaved cell holds the teacher's eager "
             f"fp32 and the int8 exports of {teacher} and {slim} on OpenVINO and ONNX Runtime. ms = median (min) "
             "over rounds; × = median of same-round ratios to the eager time. The verdict takes the worst run.",
             "Regenerate: `make slim-speedup`, alone on the machine.", "",
             f"| res | run | eager fp32 ms | {slim} OpenVINO int8 ms | × | {slim} ONNX Runtime int8 ms | × "
             f"| {teacher} OpenVINO int8 ms | {teacher} ONNX Runtime int8 ms | OpenVINO / ORT |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for res, cell in summary.items():
        for i, run in enumerate(cell["runs"], 1):
            eng, ti = run["engines"], run["teacher_int8"]
            slim_cells = [f"{eng[f]['p50_ms']:.0f} ({eng[f]['min_ms']:.0f}) | {eng[f]['speedup']:.2f}x"
                          for f in INT8_ENGINES]
            lines.append(f"| {res} | {i} | {run['eager_ms']:.0f} | " + " | ".join(slim_cells) + " | "
                         f"{ti['OpenVINO']['p50_ms']:.0f} | {ti['ONNX Runtime']['p50_ms']:.0f} | "
                         f"{run['teacher_openvino_vs_ort']:.2f}x |")
    lines.append("")
    for res, cell in summary.items():
        verdict = "meets" if cell["meets"] else "misses"
        ov = "meets" if cell["openvino_meets"] else "misses"
        ratio = cell["worst_teacher_openvino_vs_ort"]
        lines.append(f"- {res}: worst run {cell['worst_speedup']:.2f}x: {verdict} the ≥{TARGET:.0f}x target; "
                     f"{teacher} OpenVINO int8 vs ONNX Runtime int8, worst run {ratio:.2f}x: {ov} ≥{OPENVINO_OVER_ORT}x.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--teacher", type=Path, default=Path("models/wave.safetensors"))
    parser.add_argument("--slim", type=Path, default=Path("models/wave-slim.safetensors"))
    parser.add_argument("--artifacts", type=Path, default=Path("artifacts"))
    parser.add_argument("--photos", type=Path, default=Path("benchmarks/photos"))
    parser.add_argument("--resolution", action="append", help="512, 1080p or WxH; repeat (default 512 and 1080p)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=usable_cores())
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/slim-speedup"))
    parser.add_argument("--one-run", type=Path, help=argparse.SUPPRESS)  # a child process: write one run's JSON here
    args = parser.parse_args(argv)
    resolutions = args.resolution or ["512", "1080p"]
    try:
        for path in (args.teacher, args.slim):
            int8_export(path, args.artifacts)
        if args.one_run:
            result = one_run(args.teacher, args.slim, args.artifacts, args.photos, resolutions, args.threads)
            args.one_run.write_text(json.dumps(result))
            return
        runs = []
        with tempfile.TemporaryDirectory(prefix="stylecast-slim-") as scratch:
            for i in range(args.runs):
                print(f"run {i + 1}/{args.runs}", flush=True)
                dest = Path(scratch) / f"run{i}.json"
                child = [sys.executable, "-m", "stylecast.benchmarks.studies.slim_speedup", "--one-run", str(dest),
                         "--teacher", str(args.teacher), "--slim", str(args.slim), "--artifacts", str(args.artifacts),
                         "--photos", str(args.photos), "--threads", str(args.threads),
                         *[a for r in resolutions for a in ("--resolution", r)]]
                subprocess.run(child, check=True)
                runs.append(json.loads(dest.read_text()))
    except StylecastError as exc:
        sys.exit(f"error: {exc}")
    summary = summarise(runs, args.teacher.stem, args.slim.stem)
    text = markdown(summary, args.teacher.stem, args.slim.stem, args.threads, args.runs)
    record = {"machine": fingerprint(), "threads": args.threads, "runs": runs, "summary": summary,
              "teacher_sha256": sha256_file(args.teacher), "slim_sha256": sha256_file(args.slim)}
    write_results(args.out, record, text)
    print(text + f"wrote {args.out}.md and .json")


if __name__ == "__main__":
    main()
