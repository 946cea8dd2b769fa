"""Training-step speed of the options that do not change what is learnt: fp32, channels_last,
torch.compile, bf16 autocast, each through the real Trainer for a few steps of a style's preset.

    python -m stylecast.benchmarks.studies.step_speed --style wave --data ../shared/photos

Per-step process CPU time (all threads) and wall time, medians after the warm-up steps (which pay for compilation).
The options take turns over ``--rounds`` so a change in machine load does not favour one of them. Writes
benchmarks/results/recipe-ab/step-speed-<machine class>.{json,md}.
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from stylecast.benchmarks.report import write_results
from stylecast.runtime.machine import class_id, describe_class, fingerprint
from stylecast.train.precision import measured_verdict
from stylecast.train.presets import resolve, train_config

OPTIONS = {  # every key set, so a preset's own channels_last or compile does not leak into another option
    "fp32": {"precision": "fp32", "channels_last": False, "compile": False},
    "channels_last": {"precision": "fp32", "channels_last": True, "compile": False},
    "compile": {"precision": "fp32", "channels_last": False, "compile": True},
    "channels_last+compile": {"precision": "fp32", "channels_last": True, "compile": True},
    "bf16": {"precision": "bf16", "channels_last": False, "compile": False},
    "bf16+compile": {"precision": "bf16", "channels_last": False, "compile": True},
}


def time_steps(style: str, data: Path, styles_dir: Path, settings: dict, steps: int, warmup: int) -> dict:
    """Train ``warmup + steps`` steps in a scratch folder; per-step CPU and wall seconds after the warm-up."""
    from stylecast.train.trainer import Trainer

    with tempfile.TemporaryDirectory() as scratch:
        chosen = resolve(style, styles_dir, {**settings, "steps": warmup + steps, "log_every": 1})
        config = train_config(style, data, styles_dir, chosen, out=Path(scratch) / "m.safetensors",
                              run_dir=Path(scratch) / "run")
        Trainer(config).run()
        with open(Path(scratch) / "run" / "log.csv", newline="") as handle:
            rows = list(csv.DictReader(handle))
    cpu = np.diff([float(r["cpu_seconds"]) for r in rows])[warmup - 1:]
    wall = [float(r["seconds"]) for r in rows][warmup:]
    return {"cpu_s_per_step": float(np.median(cpu)), "wall_s_per_step": float(np.median(wall))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--style", default="wave")
    parser.add_argument("--data", type=Path, default=Path("../shared/photos"))
    parser.add_argument("--styles-dir", type=Path, default=Path("styles"))
    parser.add_argument("--steps", type=int, default=6, help="timed steps per option and round")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (compilation happens there)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--options", default=",".join(OPTIONS),
                        help=f"comma-separated, from {', '.join(OPTIONS)} (bf16 ones only where not emulated)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/recipe-ab"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    names = [n for n in args.options.split(",") if n]
    unknown = sorted(set(names) - set(OPTIONS))
    if unknown:
        parser.error(f"unknown option(s) {unknown}; choose from {', '.join(OPTIONS)}")
    verdict = measured_verdict(torch.device("cpu"))
    if verdict.emulated:  # without native bf16 kernels a step takes minutes: measured, then left out, said so
        print(f"bf16 options left out: {verdict.reason()}", flush=True)
        names = [n for n in names if OPTIONS[n]["precision"] != "bf16"]
    runs: dict[str, list[dict]] = {n: [] for n in names}
    for _ in range(args.rounds):
        for name in names:
            runs[name].append(time_steps(args.style, args.data, args.styles_dir, OPTIONS[name], args.steps, args.warmup))
            print(name, runs[name][-1], flush=True)
    machine = fingerprint()
    base = resolve(args.style, args.styles_dir, {})
    result = {"style": args.style, "crop": base["crop"], "batch": base["batch"], "threads": args.threads,
              "machine": describe_class(machine), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "options": {}}
    for name, timings in runs.items():
        result["options"][name] = {key: float(np.median([t[key] for t in timings]))
                                   for key in ("cpu_s_per_step", "wall_s_per_step")}
    fp32 = result["options"].get("fp32", {}).get("cpu_s_per_step")
    lines = [f"# Training-step speed, `{args.style}` preset ({base['crop']}² crops, batch {base['batch']}), "
             f"{args.threads} threads", "", f"{result['machine']}; medians of {args.rounds} rounds × {args.steps} steps "
             f"after {args.warmup} warm-up steps. Regenerate: `make step-speed STYLE={args.style}`.", "",
             "| option | CPU s / step | wall s / step | vs fp32 (CPU) |", "|---|---:|---:|---:|"]
    for name, r in result["options"].items():
        ratio = f"{fp32 / r['cpu_s_per_step']:.2f}×" if fp32 else "n/a"
        lines.append(f"| {name} | {r['cpu_s_per_step']:.2f} | {r['wall_s_per_step']:.2f} | {ratio} |")
    stem = args.out / f"step-speed-{class_id(machine)}"
    write_results(stem, result, "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
