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

from stylecast.benchmarks.quality.multistyle import held_styles
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
MEAN_CURVE_FORMAT = "quality-curve-mean"


def run_snapshots(run_dir: Path) -> list[Path]:
    """A run's snapshots, oldest first; one line where it kept none."""
    paths = snapshots(run_dir)
    if not paths:
        raise StylecastError(f"{run_dir}: no snapshots; train with --snapshot-every N (steps) to keep them")
    return paths


def run_styles(run_dir: Path) -> tuple[str, list[str]]:
    """The name and styles of a run's net, from its first snapshot."""
    return held_styles(run_snapshots(run_dir)[0])


def _painting_sha(meta: dict[str, str], style: str | None) -> str | None:
    """The sha256 of the painting a snapshot trained ``style`` on: a multi-style one lists one per style."""
    if style is None:
        return meta.get("style_image_sha256")
    try:
        names, shas = json.loads(meta.get("styles", "[]")), json.loads(meta.get("style_image_sha256", "[]"))
    except ValueError:
        return None
    return dict(zip(names, shas, strict=False)).get(style) if isinstance(names, list) and isinstance(shas, list) \
        else None


def snapshot_score(ys: Yardstick, path: Path, style: str | None = None) -> dict:
    """One snapshot's yardstick summary, cached in ``<snapshot>.quality.json`` under its hash and the references';
    ``style`` scores that style of a multi-style snapshot (cached in ``<snapshot>.<style>.quality.json``)."""
    meta = read_metadata(path)
    if _painting_sha(meta, style) != ys.style_sha:
        raise StylecastError(f"{path}: trained on another style image ({meta.get('style_image', '?')}) than "
                             f"{ys.style_image.name}{f' for {style}' if style else ''}; score it with --style of "
                             "the run")
    key = {"model_sha256": sha256_file(path), "references": {c.name: ys.key(c) for c in ys.conventions}}
    cache = path.with_suffix(f".{style}.quality.json" if style else ".quality.json")
    if cache.is_file():
        cached = json.loads(cache.read_text())
        if cached.get("key") == key:
            return cached
    stylize, _ = model_stylizer(path, style=style)
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


def curve(ys: Yardstick, run_dir: Path, progress: Callable[[int, int], None] = lambda done, total: None,
          style: str | None = None) -> dict:
    """Every snapshot of ``run_dir`` scored, oldest first, and the fit to the target under the project loss;
    ``style`` picks one style of a multi-style run."""
    paths = run_snapshots(run_dir)
    rows = []
    for done, path in enumerate(paths, 1):
        rows.append(snapshot_score(ys, path, style))
        progress(done, len(paths))
    points = [(row["cpu_hours"], row["summary"]["project"]["ratio"]["median"]) for row in rows]
    return {"format": CURVE_FORMAT, "run_dir": str(run_dir), "style_image": ys.style_image.name,
            "style_sha256": ys.style_sha, "reference_keys": {c.name: ys.key(c) for c in ys.conventions},
            "target_ratio": TARGET_RATIO, "fit": fit_hours(points), "snapshots": rows,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **({"style": style} if style else {})}


def mean_curve(yardsticks: dict[str, Yardstick], run_dir: Path,
               progress: Callable[[int, int], None] = lambda done, total: None) -> dict:
    """A multi-style run's curve: each style's snapshots scored as ``curve`` scores them, and per snapshot the
    mean over the styles of their median ratios, which the fit follows."""
    count, per = len(run_snapshots(run_dir)), {}
    for k, (style, ys) in enumerate(yardsticks.items()):
        per[style] = curve(ys, run_dir, lambda done, _, k=k: progress(k * count + done, len(yardsticks) * count),
                           style)
    losses = [c.name for c in next(iter(yardsticks.values())).conventions]
    rows = []
    for i, first in enumerate(next(iter(per.values()))["snapshots"]):
        ratios = {style: {n: report["snapshots"][i]["summary"][n]["ratio"]["median"] for n in losses}
                  for style, report in per.items()}
        rows.append({"snapshot": first["snapshot"], "steps": first["steps"], "cpu_hours": first["cpu_hours"],
                     "ratios": ratios, "mean": {n: float(np.mean([r[n] for r in ratios.values()])) for n in losses}})
    return {"format": MEAN_CURVE_FORMAT, "run_dir": str(run_dir), "styles": list(per), "losses": losses,
            "reference_keys": {style: report["reference_keys"] for style, report in per.items()},
            "target_ratio": TARGET_RATIO, "fit": fit_hours([(row["cpu_hours"], row["mean"]["project"]) for row in rows]),
            "snapshots": rows, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


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
    return "\n".join([*lines, "", _fit_text(report, "project ratio")]) + "\n"


def _fit_text(report: dict, what: str) -> str:
    fit = report["fit"]
    if fit["hours"] is None:
        return f"No estimate of the hours to {report['target_ratio']:g}×: {fit['why']}."
    return (f"A power law through the {what} of the last {fit['points']} snapshots (from "
            f"{fit['from_hours']:.2f} CPU-hours; excess over Gatys ∝ hours^{fit['exponent']:.2f}, "
            f"R² {fit['r2']:.2f}) reaches {report['target_ratio']:g}× at **about {fit['hours']:.0f} "
            "CPU-hours** of this machine's training. It is an extrapolation: if the net's capacity caps it, "
            "the last points flatten first.")


def mean_markdown(report: dict) -> str:
    """A multi-style run's curve: the mean ratio over its styles per loss, then each style's project ratio."""
    losses, styles = report["losses"], report["styles"]
    lines = [f"# Quality against training hours: `{report['run_dir']}` ({len(styles)} styles)", "",
             "Each snapshot of the multi-style run scored on the held-out photos, style by style (`stylecast "
             "quality-curve --style all`): each style's median total loss over its converged Gatys' (the net fed "
             f"that style's one-hot vector), and their mean over the styles (target ≤{report['target_ratio']:g} "
             "under the project loss).", "",
             "| step | CPU-hours | " + " | ".join(f"{n} ratio, mean" for n in losses) + " | "
             + " | ".join(f"{style} (project)" for style in styles) + " |",
             "|---:|---:|" + "---:|" * (len(losses) + len(styles))]
    for row in report["snapshots"]:
        lines.append(f"| {row['steps']} | {row['cpu_hours']:.2f} | "
                     + " | ".join(f"{row['mean'][n]:.2f}" for n in losses) + " | "
                     + " | ".join(f"{row['ratios'][style]['project']:.2f}" for style in styles) + " |")
    return "\n".join([*lines, "", _fit_text(report, "mean project ratio")]) + "\n"


def _lines(report: dict) -> dict[str, list[float]]:
    """What a curve plots: each loss's median ratio, or a multi-style run's mean over its styles."""
    rows = report["snapshots"]
    if report["format"] == MEAN_CURVE_FORMAT:
        return {f"{n} loss, mean of {len(report['styles'])} styles": [row["mean"][n] for row in rows]
                for n in report["losses"]}
    return {f"{n} loss": [row["summary"][n]["ratio"]["median"] for row in rows] for n in report["reference_keys"]}


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
    for label, ratios in _lines(report).items():
        ax.plot(hours, ratios, marker="o", label=label)
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


def write(report: dict, out: Path) -> Path:
    """<stem>.json, .md and .png in ``out``: ``curve``, or ``mean-curve`` for a multi-style run's mean (beside its
    styles' folders); returns the .md."""
    mean = report["format"] == MEAN_CURVE_FORMAT
    stem = out / ("mean-curve" if mean else "curve")
    atomic_write(stem.with_suffix(".json"), lambda tmp: tmp.write_text(json.dumps(report, indent=1) + "\n"))
    atomic_write(stem.with_suffix(".md"), lambda tmp: tmp.write_text((mean_markdown if mean else markdown)(report)))
    plot(report, stem.with_suffix(".png"))
    return stem.with_suffix(".md")
