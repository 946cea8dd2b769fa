"""The yardstick on a multi-style model: which of its styles a command scores, the one line a style without its
Gatys reference gets, and the summary of `stylecast quality --style all`, one row per style.

Each style is scored as a model of its own: the net fed that style's one-hot vector, under that style's preset
loss and against that style's Gatys reference, so a row reads like a single-style model's report.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from stylecast.benchmarks.quality.yardstick import Yardstick
from stylecast.runtime.artifacts import read_metadata, sha256_file
from stylecast.runtime.errors import StylecastError
from stylecast.runtime.images import atomic_write
from stylecast.runtime.styles_catalog import model_styles

ALL = "all"  # --style all: every style of the model
SUMMARY_FORMAT = "quality-summary"


def held_styles(path: Path) -> tuple[str, list[str]]:
    """A model's name (its multi-style reports are filed under it) and its styles in row order, from its metadata
    alone (a checkpoint, a snapshot or an export)."""
    meta = read_metadata(path)
    return meta.get("style", path.stem), model_styles(meta, str(path))


def chosen_styles(path: Path, held: list[str], style: str | None) -> list[str]:
    """The styles ``--style`` picks of a model that holds ``held``: a single-style model's own (also without the
    option), one style of a multi-style model, or all of them."""
    if len(held) == 1:
        if style not in (None, held[0]):
            raise StylecastError(f"--style {style}: {path.name} is a single-style model of {held[0]}; pass --style "
                                 f"{held[0]} or leave it out")
        return held
    if style is None:
        raise StylecastError(f"{path.name} holds {len(held)} styles ({', '.join(held)}); pass --style NAME|all")
    if style == ALL:
        return held
    if style not in held:
        raise StylecastError(f"--style {style}: {path.name} holds {', '.join(held)}; pass --style NAME|all")
    return [style]


def missing_reference(ys: Yardstick, style: str) -> str | None:
    """One line for a style whose Gatys reference is not (all) computed yet, naming the target that computes it."""
    missing = ys.missing()
    if not missing:
        return None
    return (f"no Gatys reference for {style} yet ({len(missing)} of {len(ys.photos) * len(ys.conventions)} files "
            f"missing in {ys.reference_dir}); compute it: make quality-reference STYLE={style}")


def _cell(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def summary_markdown(summary: dict) -> str:
    """The summary table: each style's ratio and style term per loss, border and flicker; a link to its report."""
    losses = summary["losses"]
    head = ["style", *(f"{n} {what}" for n in losses for what in ("ratio", "style term")),
            f"Gatys matches after ({losses[0]})", "border", "flicker"]
    lines = [f"# Quality of `{Path(summary['model']).name}`, style by style", "",
             "Each style scored as `stylecast quality --style NAME` scores it: the net fed that style's one-hot "
             "vector, under the style's own loss and against its own Gatys reference (its report: the style's "
             "link). Ratio: total loss over converged Gatys' (median and range over the held-out photos; target "
             "≤1.4 under the project loss). Style term: the net's style loss term over Gatys' on the same photos "
             "(median; 1.0 = as close to the painting's textures as Gatys, higher: less of the style). Border: "
             "target ≤1.05; still-camera flicker: target ≤2.0.", "",
             "| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for row in summary["rows"]:
        s = row["summary"]
        if s is None:
            cells = [f"no reference (make quality-reference STYLE={row['style']})", *[""] * (len(head) - 2)]
        else:
            cells = [f"{s[n]['ratio']['median']:.2f} ({s[n]['ratio']['min']:.2f}–{s[n]['ratio']['max']:.2f}) | "
                     f"{s[n]['style_ratio']['median']:.2f}" for n in losses]
            cells += [s[losses[0]]["matches_after_median"], f"{s['border_ratio']['median']:.2f}",
                      _cell(s["flicker"]["ratio"])]
        name = row["style"] if s is None else f"[{row['style']}]({row['style']}/report.md)"
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_summary(model: Path, losses: list[str], reports: dict[str, dict | None], out: Path) -> dict:
    """summary.json and summary.md in ``out``: one row per style, ``None`` for a style left without a reference."""
    summary = {"format": SUMMARY_FORMAT, "model": str(model), "model_sha256": sha256_file(model), "losses": losses,
               "rows": [{"style": style, "summary": report and report["summary"]} for style, report in reports.items()],
               "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    atomic_write(out / "summary.json", lambda tmp: tmp.write_text(json.dumps(summary, indent=1) + "\n"))
    atomic_write(out / "summary.md", lambda tmp: tmp.write_text(summary_markdown(summary)))
    return summary
