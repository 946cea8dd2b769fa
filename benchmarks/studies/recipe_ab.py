"""Recipe A/B: short training runs of several variants at an equal CPU budget, each scored with the
yardstick, in one table.

The budget is process CPU time (all threads), not wall time, so a variant that ran while the machine was busy is
not penalised. Resumable: a variant with a model and a score is skipped; one stopped half-way resumes through the
trainer's own resume (bit for bit); the report is rewritten from whatever is finished.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stylecast.benchmarks.quality.yardstick import Yardstick, compute_reference, model_stylizer, report_dict, score
from stylecast.runtime.errors import StylecastError
from stylecast.runtime.gallery import make_gallery
from stylecast.runtime.images import atomic_write, load_image
from stylecast.runtime.machine import class_id, describe_class, fingerprint
from stylecast.train.presets import resolve, train_config
from stylecast.train.settings import OPTIONS

if sys.version_info >= (3, 11):
    import tomllib  # novermin (only reached on 3.11+)
else:  # Python 3.10 (JetPack 6's): the same parser, from PyPI
    import tomli as tomllib  # novermin


def readme_block(style: str) -> str:
    """The README markers that hold ``style``'s A/B tables (``<!-- recipe-ab-wave:start -->``)."""
    return f"recipe-ab-{style}"


def stem(style: str) -> str:
    """``wave-707400d1``: one table, sheet and runs folder per machine class. A CPU-second buys different training
    on different CPUs, so rows measured on two classes are not compared, and a variant never resumes on another."""
    return f"{style}-{class_id(fingerprint())}"


def readme_tables(out: Path, style: str) -> str:
    """Every machine class's table for ``style`` (without titles), for the README block."""
    return "\n\n".join(path.read_text().split("\n", 2)[2].rstrip() for path in sorted(out.glob(f"{style}-*.md")))


@dataclass
class Plan:
    """Which variants, on top of which shared settings, at what budget."""

    style: str
    budget_cpu_s: float
    base: dict[str, Any] = field(default_factory=dict)
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)


def _value(text: str) -> Any:
    """A TOML value (1e10, 192, true, [160, 320]), else the bare text as a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_variant(spec: str) -> tuple[str, dict[str, Any]]:
    """``name:key=value,key=value`` (``name`` alone: the preset as it is)."""
    name, _, rest = spec.partition(":")
    settings = {}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, sep, value = item.partition("=")
        if not sep:
            raise StylecastError(f"--variant {spec}: {item!r} is not key=value")
        settings[key.strip().replace("-", "_")] = _value(value.strip())
    if not name.strip():
        raise StylecastError(f"--variant {spec}: give it a name, e.g. crop192:crop=192,batch=2")
    return name.strip(), settings


def load_plan(path: Path) -> Plan:
    """A variants file: ``style``, ``budget_cpu_min``, ``[base]`` and one ``[variants.NAME]`` table each."""
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise StylecastError(f"{path}: not a readable variants file ({exc})") from exc
    unknown = sorted(set(data) - {"style", "budget_cpu_min", "base", "variants"})
    if unknown or "style" not in data:
        raise StylecastError(f"{path}: needs style, budget_cpu_min, [base], [variants.NAME]; unknown {unknown}")
    return Plan(data["style"], float(data.get("budget_cpu_min", 25)) * 60, data.get("base", {}),
                data.get("variants", {}))


def check(plan: Plan) -> None:
    """Every key of every variant is a train setting: a typo fails before hours of training."""
    if plan.budget_cpu_s <= 0 or not plan.variants:
        raise StylecastError("recipe-ab needs a positive CPU budget and at least one variant")
    for name, settings in {"base": plan.base, **plan.variants}.items():
        unknown = sorted(set(settings) - set(OPTIONS))
        if unknown:
            raise StylecastError(f"variant {name}: unknown setting(s) {unknown}; known: {sorted(OPTIONS)}")
        if "cpu_budget_s" in settings:
            raise StylecastError(f"variant {name}: the budget is the harness's (--budget-cpu-min), equal for all")


def run_variant(plan: Plan, name: str, ys: Yardstick, data: Path, styles_dir: Path, root: Path,
                loss_net_weights: Path | None = None) -> dict:
    """Train ``name`` to the budget (or resume it), then score it; returns its quality report."""
    from stylecast.train.trainer import Trainer

    folder = root / name
    model, scored_at = folder / "model.safetensors", folder / "quality" / "report.json"
    recipe = {"variant": name, "settings": plan.variants[name], "base": plan.base, "budget_cpu_s": plan.budget_cpu_s}
    if model.is_file() and scored_at.is_file():
        done = json.loads(scored_at.read_text())
        if {k: done.get(k) for k in recipe} != recipe:
            raise StylecastError(f"variant {name} changed since {folder} was trained; rename the variant or delete "
                                 "that folder")
        return done
    overrides = {**plan.base, **plan.variants[name], "cpu_budget_s": plan.budget_cpu_s}
    if not model.is_file():
        settings = resolve(plan.style, styles_dir, overrides)
        config = train_config(plan.style, data, styles_dir, settings, out=model, run_dir=folder / "run",
                              loss_net_weights=loss_net_weights)
        Trainer(config).run(resume=(folder / "run" / "state.safetensors").is_file())
    stylize, meta = model_stylizer(model)
    scored = score(ys, stylize)
    report = report_dict(ys, scored, model, meta, recipe)
    atomic_write(scored_at, lambda tmp: tmp.write_text(json.dumps(report, indent=1) + "\n"))
    return report


def settings_text(settings: dict[str, Any]) -> str:
    """``crop=192, content_weight=2e+05`` (floats in the shortest form, as a preset would say them)."""
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in settings.items())


def table(plan: Plan, reports: dict[str, dict], threads: int) -> tuple[dict, str]:
    """The A/B report (JSON and Markdown), best project-loss ratio first."""
    rows = []
    for name, report in reports.items():
        s = report["summary"]
        rows.append({"variant": name, "settings": plan.variants[name], "steps": int(report["trained_steps"] or 0),
                     "precision": report.get("train_precision") or "unrecorded",
                     "train_cpu_min": round(float(report["train_cpu_seconds"] or 0) / 60, 1),
                     "project_ratio": s["project"]["ratio"], "examples_ratio": s.get("examples", {}).get("ratio"),
                     "matches_after": s["project"]["matches_after_median"], "border_ratio": s["border_ratio"],
                     "flicker_ratio": s.get("flicker", {}).get("ratio")})
    rows.sort(key=lambda r: r["project_ratio"]["median"])
    machine = fingerprint()
    result = {"style": plan.style, "budget_cpu_min": plan.budget_cpu_s / 60, "threads": threads, "base": plan.base,
              "machine": describe_class(machine), "rows": rows, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    lines = [f"# Recipe A/B for `{plan.style}`", "",
             f"Each variant trained for {plan.budget_cpu_s / 60:.3g} CPU-minutes (process CPU time, {threads} "
             f"threads) on {result['machine']}, on top of `styles/{plan.style}.toml` and "
             f"{settings_text(plan.base) or 'nothing else'} (precision: what `auto` measured fastest, unless set); "
             "scored on the held-out photos by `stylecast quality` (ratio: total loss over converged Gatys; "
             "lower is better; border: 1.0 = no edge artefact, photos about 0.9; flicker: still-camera clip, "
             "target ≤2.0). The compile warm-up (each sitting's first step) is not part of the budget. "
             f"Regenerate: `make recipe-ab STYLE={plan.style}`.", "",
             "| variant | settings | steps | precision | ratio (project loss) | ratio (pytorch/examples) "
             "| Gatys matches after | border | flicker |",
             "|---|---|---:|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        settings = settings_text(r["settings"]) or "[base] alone"
        p, e, b = r["project_ratio"], r["examples_ratio"], r["border_ratio"]
        examples = f"{e['median']:.2f} ({e['min']:.2f}–{e['max']:.2f})" if e else "not computed"
        flicker = "–" if r["flicker_ratio"] is None else f"{r['flicker_ratio']:.2f}"
        lines.append(f"| {r['variant']} | {settings} | {r['steps']} | {r['precision']} "
                     f"| {p['median']:.2f} ({p['min']:.2f}–{p['max']:.2f}) "
                     f"| {examples} | {r['matches_after']} | {b['median']:.2f} | {flicker} |")
    missing = sorted(set(plan.variants) - set(reports))
    if missing:
        lines += ["", f"Not yet run on this machine class: {', '.join(missing)}."]
    return result, "\n".join(lines) + "\n"


def sheet(plan: Plan, rows: list[dict], ys: Yardstick, root: Path, dest: Path, photos: int = 3) -> None:
    """The variants side by side on the first held-out photos, in the table's order: a choice between losses (the
    style target's size changes which yardstick a model is best on) has to be made on the pictures."""
    crops = [ys.crops[p] for p in ys.photos[:photos]]
    outputs = [model_stylizer(root / r["variant"] / "model.safetensors")[0] for r in rows]
    tiles = [(crop, *(stylize(crop) for stylize in outputs)) for crop in crops]
    make_gallery(tiles, dest, title=f"recipe A/B for {plan.style}: {plan.budget_cpu_s / 60:.3g} CPU-minutes each, "
                 "best project ratio first", style=load_image(ys.style_image).rgb, height=128,
                 labels=["photo", *(r["variant"] for r in rows)], jpeg_quality=80)


def ensure_reference(ys: Yardstick) -> None:
    """The A/B cannot score without the reference: compute what is missing first (resumable per photo)."""
    for convention, photo in ys.missing():
        print(f"Gatys reference: {convention.name} {photo.name}", flush=True)
        compute_reference(ys, convention, photo)


def write(out: Path, name: str, result: dict, text: str) -> None:
    atomic_write(out / f"{name}.json", lambda tmp: tmp.write_text(json.dumps(result, indent=1) + "\n"))
    atomic_write(out / f"{name}.md", lambda tmp: tmp.write_text(text))
