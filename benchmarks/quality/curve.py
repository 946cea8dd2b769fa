"""Quality against training hours: every snapshot of a run (``stylecast train --snapshot-every N``) scored
with the yardstick, and how many CPU-hours a power law through the later snapshots says the 1.4x target needs.

The CPU of one machine cannot always buy the target within a session; the curve says how far a run got per hour and
what the next sitting should plan for. Each snapshot's score is kept beside it, so a growing run rescores only its
new snapshots.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from stylecast.benchmarks.quality.yardstick import Yardstick, model_stylizer, score
from stylecast.runtime.artifacts import sha256_file
from stylecast.runtime.errors import StylecastError
from stylecast.runtime.images import atomic_write
from stylecast.train.checkpoint import read_metadata, snapshots

TARGET_RATIO = 1.4  # the target: total loss at most 1.4x the converged Gatys loss (median)
# Below this R² the later points are flat or scattered, and a slope through them extrapolates noise (a 0.02 fit
# of a plateau once put the target at 5e20 CPU-hours): no estimate then.
MIN_FIT_R2 = 0.5
CURVE_FORMAT = "quality-curve"


def snapshot_score(ys: Yardstick, path: Path) -> dict:
    """One snapshot's yardstick summary, cached in ``<snapshot>.quality.json`` under its hash and the references'."""
    meta = read_metadata(path)
    if meta.get("style_image_sha256") != ys.style_sha:
        raise StylecastError(f"{path}: trained on another style image ({meta.get('style_image', '?')}) than "
                             f"{ys.style_image.name}; score it with --style of the run")
    key = {"model_sha256": sha256_file(path), "references": {c.name: ys.key(c) for c in ys.conventions}}
    cache = path.with_suffix(".quality.json")
    if cache.is_file():
        cached = json.loads(cache.read_text())
        if cached.get("key") == key:
            return cached
    stylize, _ = model_stylizer(path)
    row = {"key": key, "snapshot": path.name, "steps": int(meta["steps"]),
           "cpu_hours": float(meta.get("cpu_seconds", "0")) / 3600, "summary": score(ys, stylize)["summary"]}
    atomic_write(cache, lambda tmp: tmp.write_text(json.dumps(row, indent=1) + "\n"))
    return row


def fit_hours(points: list[tuple[float, float]], target: float = TARGET_RATIO) -> dict:
    """Fit ``ratio - 1 = a * hours**b`` (the excess over Gatys falling as a power law) through the later half of
    ``(cpu_hours, ratio)``, the early points falling faster than the trend; the hours where it reaches ``target``.
    Extrapolation: a plateau (the net's capacity) would first show as flattening last points."""
    usable = [(h, r) for h, r in points if h > 0 and r > 1.0]
    later = usable[len(usable) // 2:]
    if len(later) < 3:
        return {"hours": None, "why": f"{len(later)} usable later point(s); the fit needs 3"}
    x, y = np.log([h for h, _ in later]), np.log([r - 1.0 for _, r in later])
    slope, intercept = np.polyfit(x, y, 1)
    residual = y - (slope * x + intercept)
    r2 = 1.0 - float(residual @ residual) / max(float(((y - y.mean()) ** 2).sum()), 1e-12)
    fit = {"exponent": float(slope), "coefficient": float(math.exp(intercept)), "r2": r2, "points": len(later),
           "from_hours": float(later[0][0])}
    if slope >= 0:
        return {**fit, "hours": None, "why": "the excess over Gatys is not falling over the later points"}
    if r2 < MIN_FIT_R2:
        return {**fit, "hours": None, "why": f"the later points are flat or scattered (R² {r2:.2f} < {MIN_FIT_R2:g}): "
                                             "more hours of this schedule are not shown to help"}
    return {**fit, "hours": float(math.exp((math.log(target - 1.0) - intercept) / slope))}


def curve(ys: Yardstick, run_dir: Path, progress: Callable[[int, int], None] = lambda done, total: None) -> dict:
    """Every snapshot of ``run_dir`` scored, oldest first, and the fit to the target under the project loss."""
    paths = snapshots(run_dir)
    if not paths:
        raise StylecastError(f"{run_dir}: no snapshots; train with --snapshot-every N (steps) to keep them")
    rows = []
    for done, path in enumerate(paths, 1):
        rows.append(snapshot_score(ys, path))
        progress(done, len(paths))
    points = [(row["cpu_hours"], row["summary"]["project"]["ratio"]["median"]) for row in rows]
    return {"format": CURVE_FORMAT, "run_dir": str(run_dir), "style_image": ys.style_image.name,
            "style_sha256": ys.style_sha, "reference_keys": {c.name: ys.key(c) for c in ys.conventions},
            "target_ratio": TARGET_RATIO, "fit": fit_hours(points), "snapshots": rows,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def markdown(report: dict) -> str:
    names = list(report["reference_keys"])
    lines = [f"# Quality against training hours: `{report['run_dir']}` ({report['style_image']})", "",
             "Each snapshot of the run scored on the held-out photos (`stylecast quality-curve`): the median of its "
             f"total loss over converged Gatys' (target ≤{report['target_ratio']:g} under the project loss), the "
             "border ratio (target ≤1.05) and the still-camera flicker ratio (target ≤2.0).", "",
             "| step | CPU-hours | " + " | ".join(f"{n} ratio" for n in names) + " | border | flicker |",
             "|---:|---:|" + "---:|" * len(names) + "---:|---:|"]
    for row in report["snapshots"]:
        s = row["summary"]
        flicker = s["flicker"]["ratio"]
        lines.append(f"| {row['steps']} | {row['cpu_hours']:.2f} | "
                     + " | ".join(f"{s[n]['ratio']['median']:.2f}" for n in names)
                     + f" | {s['border_ratio']['median']:.2f} | {'n/a' if flicker is None else f'{flicker:.2f}'} |")
    fit = report["fit"]
    if fit["hours"] is None:
        lines += ["", f"No estimate of the hours to {report['target_ratio']:g}×: {fit['why']}."]
    else:
        lines += ["", f"A power law through the project ratio of the last {fit['points']} snapshots (from "
                  f"{fit['from_hours']:.2f} CPU-hours; excess over Gatys ∝ hours^{fit['exponent']:.2f}, "
                  f"R² {fit['r2']:.2f}) reaches {report['target_ratio']:g}× at **about {fit['hours']:.0f} "
                  "CPU-hours** of this machine's training. It is an extrapolation: if the net's capacity caps it, "
                  "the last points flatten first."]
    return "\n".join(lines) + "\n"


def plot(report: dict, dest: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import LogFormatter

    class _PlainLogFormatter(LogFormatter):
        """matplotlib's choice of which log ticks to label, written as plain numbers: a run's snapshots often span
        less than a decade of hours, where the default labels read "4×10⁰"."""

        def __call__(self, x: float, pos: int | None = None) -> str:
            return f"{x:g}" if super().__call__(x, pos) else ""

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    rows = report["snapshots"]
    hours = [row["cpu_hours"] for row in rows]
    for name in report["reference_keys"]:
        ax.plot(hours, [row["summary"][name]["ratio"]["median"] for row in rows], marker="o", label=f"{name} loss")
    fit = report["fit"]
    if fit["hours"] is not None:
        span = np.geomspace(fit["from_hours"], max(fit["hours"], hours[-1]), 50)
        ax.plot(span, 1.0 + fit["coefficient"] * span ** fit["exponent"], "--", color="grey", label="power-law fit")
    ax.axhline(report["target_ratio"], color="green", linewidth=1, label=f"target {report['target_ratio']:g}×")
    ax.set_xscale("log")
    for set_formatter in (ax.xaxis.set_major_formatter, ax.xaxis.set_minor_formatter):
        set_formatter(_PlainLogFormatter())
    ax.set_xlabel("training CPU-hours")
    ax.set_ylabel("loss / converged Gatys (median)")
    ax.set_title(f"quality against training hours: {Path(report['run_dir']).name}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    atomic_write(dest, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)


def write(report: dict, out: Path) -> None:
    atomic_write(out / "curve.json", lambda tmp: tmp.write_text(json.dumps(report, indent=1) + "\n"))
    atomic_write(out / "curve.md", lambda tmp: tmp.write_text(markdown(report)))
    plot(report, out / "curve.png")
