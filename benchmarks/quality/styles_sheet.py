"""The shipped styles side by side: every style with a model, run on the same sample photos in one sheet,
and each style's yardstick figures (from its `make quality` report) in one README table. Both are written by this
command only, so what the README shows is what the models in `models/` do.

A report scored on other weights than the model now in `models/` is shown as stale, never with its old numbers.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from stylecast.benchmarks.quality.flicker import RUNTIME_HOLD
from stylecast.benchmarks.quality.yardstick import model_stylizer
from stylecast.benchmarks.report import readme_parts, splice_block
from stylecast.runtime.artifacts import sha256_file
from stylecast.runtime.errors import StylecastError
from stylecast.runtime.gallery import make_gallery
from stylecast.runtime.images import fit, load_image
from stylecast.train.data import list_images

README_BLOCK = "styles"
SIDE, TILE = 256, 192  # px: the centre crop of each photo, and its height in the sheet


def shipped(styles_dir: Path, models_dir: Path) -> list[str]:
    """The styles with a preset in ``styles_dir`` and a model in ``models_dir``, by name."""
    return sorted(p.stem for p in styles_dir.glob("*.toml") if (models_dir / f"{p.stem}.safetensors").is_file())


def _painting(styles_dir: Path, style: str) -> np.ndarray:
    from stylecast.train.presets import resolve

    return load_image(styles_dir / resolve(style, styles_dir, {})["image"]).rgb


def sheet(styles: list[str], styles_dir: Path, models_dir: Path, photos: list[Path], dest: Path) -> None:
    """One row of photos, then one row per style: its painting, then its model on each photo."""
    crops = [fit(load_image(p).rgb, SIDE, SIDE) for p in photos]
    rows = [(np.full((SIDE, SIDE, 3), 255, np.uint8), *crops)]
    for style in styles:
        stylize, _ = model_stylizer(models_dir / f"{style}.safetensors")
        rows.append((_painting(styles_dir, style), *(stylize(c) for c in crops)))
    make_gallery(rows, dest, title="stylecast: the shipped styles (make styles-sheet)", height=TILE,
                 labels=["painting", *(p.stem for p in photos)])


def _row(style: str, models_dir: Path, results: Path) -> str:
    model = models_dir / f"{style}.safetensors"
    path = results / style / "report.json"
    if not path.is_file():
        return f"| {style} | not scored yet: `make quality STYLE={style}` | | | | | |"
    report = json.loads(path.read_text())
    if report.get("model_sha256") != sha256_file(model):
        return f"| {style} | stale: scored another {model.name}; `make quality STYLE={style}` | | | | | |"
    s = report["summary"]
    flicker, held = s["flicker"]["ratio"], s["flicker"].get("held", {}).get("ratio")
    hours = float(report["train_cpu_seconds"]) / 3600 if report.get("train_cpu_seconds") else None
    return (f"| {style} | {s['project']['ratio']['median']:.2f} ({s['project']['ratio']['min']:.2f}–"
            f"{s['project']['ratio']['max']:.2f}) | "
            + (f"{s['examples']['ratio']['median']:.2f}" if "examples" in s else "n/a")
            + f" | {s['border_ratio']['median']:.2f} | {'n/a' if flicker is None else f'{flicker:.2f}'} | "
            f"{'n/a' if held is None else f'{held:.2f}'} | {report['trained_steps']} steps, "
            f"{'unrecorded' if hours is None else f'{hours:.1f}'} CPU-h"
            + ("" if report.get("excluded_photos") not in (None, "none") else "; held-out photos not excluded")
            + " |")


def table(styles: list[str], models_dir: Path, results: Path) -> str:
    """The yardstick row of each style (targets: ratio ≤1.4, border ≤1.05, flicker ≤2.0)."""
    lines = ["| style | loss / Gatys, project (median, range) | examples | border | flicker | with `--input-hold "
             f"{RUNTIME_HOLD:g}` | trained |", "|---|---:|---:|---:|---:|---:|---|"]
    return "\n".join([*lines, *(_row(style, models_dir, results) for style in styles)]) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--styles-dir", type=Path, default=Path("styles"))
    parser.add_argument("--models", type=Path, default=Path("models"))
    parser.add_argument("--photos", type=Path, default=Path("benchmarks/photos"))
    parser.add_argument("--results", type=Path, default=Path("benchmarks/results/quality"))
    parser.add_argument("--out", type=Path, default=Path("docs/examples/styles.jpg"))
    parser.add_argument("--readme", type=Path, default=Path("README.md"))
    args = parser.parse_args(argv)
    try:
        readme_parts(args.readme, README_BLOCK)  # checked before the models run
        styles = shipped(args.styles_dir, args.models)
        if not styles:
            raise StylecastError(f"{args.models}: no model for any style of {args.styles_dir}; train one first "
                                 "(make train STYLE=wave)")
        photos = list_images(args.photos)
        sheet(styles, args.styles_dir, args.models, photos, args.out)
        text = table(styles, args.models, args.results)
    except StylecastError as exc:
        sys.exit(f"error: {exc}")
    link = args.out.relative_to(args.readme.parent) if args.out.is_relative_to(args.readme.parent) else args.out
    splice_block(args.readme, README_BLOCK, f"![the shipped styles]({link})\n\n{text}")
    print(text + f"wrote {args.out} and the table in {args.readme}")


if __name__ == "__main__":
    main()
