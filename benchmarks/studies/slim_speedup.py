"""Does the shipped student hold its speed-up? The slim model's deployed int8 engines against the teacher's
PyTorch eager fp32, in the same interleaved rounds, over several separate runs (fresh processes).

One run is one process: per resolution, one interleaved cell of the teacher's eager fp32, the teacher's int8
export and the slim model's int8 export, each on every backend of the format table that runs ONNX files
(``benchmarks.latency.measure``). The report quotes per run the median of same-round ratios, and the worst run,
since a claim must hold in every run. It also holds the teacher's int8 on each other ONNX backend against the
default one, which must be faster by a margin to be worth shipping beside it.

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

from stylecast.benchmarks.discover import exported
from stylecast.benchmarks.latency import TEACHER_KEY, key, measure, onnx_labels
from stylecast.benchmarks.report import write_results
from stylecast.benchmarks.suite import Resolution
from stylecast.export.parity import parity_images
from stylecast.runtime.artifacts import sha256_file
from stylecast.runtime.errors import StylecastError
from stylecast.runtime.machine import fingerprint, usable_cores
from stylecast.train.checkpoint import load_model

TARGET = 10.0  # the slim model's fastest deployed path vs the teacher's eager fp32
OVER_DEFAULT = 1.5  # the teacher's int8 on each other ONNX backend vs on the default one


def int8_export(checkpoint: Path, artifacts: Path) -> Path:
    """The model's shipped int8 export, refused if it was made from other weights."""
    return exported(checkpoint, artifacts, "int8")


def one_run(teacher: Path, slim: Path, artifacts: Path, photos: Path, resolutions: list[str], threads: int) -> dict:
    torch.set_num_threads(threads)
    loaded = load_model(teacher)
    files = {teacher.stem: int8_export(teacher, artifacts), slim.stem: int8_export(slim, artifacts)}
    photo = parity_images(photos, limit=1)[0]
    return {Resolution.parse(text).label: measure(loaded, files, Resolution.parse(text), photo, threads)
            for text in resolutions}


def summarise(runs: list[dict], teacher: str, slim: str) -> dict:
    """Per resolution: each run's figures, the slim model's fastest engine and the worst run's ratios."""
    default, *others = onnx_labels()
    out = {}
    for res in runs[0]:
        per_run = []
        for run in runs:
            cell = run[res]
            engines = {label: cell[key(slim, label, "int8")] for label in onnx_labels()}
            fastest = min((f for f in engines if "speedup" in engines[f]), key=lambda f: engines[f]["p50_ms"])
            mine = {label: cell[key(teacher, label, "int8")] for label in onnx_labels()}
            per_run.append({"eager_ms": cell[TEACHER_KEY]["p50_ms"], "engines": engines,
                            "fastest": fastest, "speedup": engines[fastest]["speedup"],
                            "teacher_vs_default": {o: mine[default]["p50_ms"] / mine[o]["p50_ms"] for o in others},
                            "teacher_int8": mine})
        worst = min(r["speedup"] for r in per_run)
        worst_other = {o: min(r["teacher_vs_default"][o] for r in per_run) for o in others}
        out[res] = {"runs": per_run, "worst_speedup": worst, "meets": worst >= TARGET,
                    "worst_teacher_vs_default": worst_other,
                    "vs_default_meets": {o: ratio >= OVER_DEFAULT for o, ratio in worst_other.items()}}
    return out


def markdown(summary: dict, teacher: str, slim: str, threads: int, runs: int) -> str:
    fp = fingerprint()
    default, *others = labels = onnx_labels()
    lines = [f"# {slim}: deployed speed-up over {teacher}'s PyTorch eager fp32 ({time.strftime('%Y-%m-%d')})", "",
             f"{fp['cpu']} ({', '.join(fp['features']) or 'no AVX2'}), {threads} thread(s), batch 1, {runs} separate "
             "runs (one process each). In every run and resolution one interleaved cell holds the teacher's eager "
             f"fp32 and the int8 exports of {teacher} and {slim} on {' and '.join(labels)}. ms = median (min) "
             "over rounds; × = median of same-round ratios to the eager time. The verdict takes the worst run.",
             "Regenerate: `make slim-speedup`, alone on the machine.", "",
             "| res | run | eager fp32 ms | " + " | ".join(f"{slim} {label} int8 ms | ×" for label in labels)
             + " | " + " | ".join(f"{teacher} {label} int8 ms" for label in labels)
             + "".join(f" | {other} / {default}" for other in others) + " |",
             "|---|---|---|" + "---|---|" * len(labels) + "---|" * len(labels) + "---|" * len(others)]
    for res, cell in summary.items():
        for i, run in enumerate(cell["runs"], 1):
            eng, ti = run["engines"], run["teacher_int8"]
            slim_cells = [f"{eng[f]['p50_ms']:.0f} ({eng[f]['min_ms']:.0f}) | {eng[f]['speedup']:.2f}x" for f in labels]
            lines.append(f"| {res} | {i} | {run['eager_ms']:.0f} | " + " | ".join(slim_cells) + " | "
                         + " | ".join(f"{ti[label]['p50_ms']:.0f}" for label in labels)
                         + "".join(f" | {run['teacher_vs_default'][o]:.2f}x" for o in others) + " |")
    lines.append("")
    for res, cell in summary.items():
        verdict = "meets" if cell["meets"] else "misses"
        line = f"- {res}: worst run {cell['worst_speedup']:.2f}x: {verdict} the ≥{TARGET:.0f}x target"
        for other, ratio in cell["worst_teacher_vs_default"].items():
            meets = "meets" if cell["vs_default_meets"][other] else "misses"
            line += f"; {teacher} {other} int8 vs {default} int8, worst run {ratio:.2f}x: {meets} ≥{OVER_DEFAULT}x"
        lines.append(line + ".")
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
