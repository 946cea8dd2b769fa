"""`stylecast evaluate`: compare stylization methods on the same photos; imported without importing torch."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from stylecast.runtime.errors import StylecastError
from stylecast.runtime.options import need_torch


def evaluate(
    contents: Annotated[list[str], typer.Argument(help="Photos, folders or glob patterns (the content images).")],
    style: Annotated[Path, typer.Option(help="The style image every method aimed at.")],
    method: Annotated[list[str], typer.Option(help="NAME=PATH, repeatable: an .onnx model (run and timed here) or a "
                                                   "folder of outputs named <photo stem>[.tag].<ext>.")],
    out: Annotated[Path, typer.Option(help="Folder for report.json, report.md and contact.png.")] = Path("evaluation"),
    size: Annotated[int, typer.Option(help="Long side (px) at which photos are scored; outputs are resized to it.")] = 256,
    loss_net: Annotated[str, typer.Option(help="Loss network for every method: vgg16 or vgg19.")] = "vgg16",
    loss_net_weights: Annotated[Path | None, typer.Option(help="Converted VGG safetensors (default: the cache).")] = None,
    fid_weights: Annotated[Path | None, typer.Option(help="TorchScript Inception-v3 (inception-2015-12-05.pt): "
                                                         "also report FID against --fid-reference.")] = None,
    fid_reference: Annotated[list[str] | None, typer.Option(help="Images FID compares every method's outputs "
                                                                 "with (files, folders or globs).")] = None,
) -> None:
    """Score outputs against their photos and the style: content/style loss, SSIM, PSNR, time per image."""
    need_torch()
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from stylecast.benchmarks.quality.evaluate import Evaluation, Evaluator, parse_method
    from stylecast.runtime.cli import expand_inputs
    from stylecast.train.losses import GATYS_CONTENT_LAYER, GATYS_STYLE_LAYERS
    from stylecast.train.vgg import load_loss_net

    if size < 16:
        raise StylecastError(f"--size {size}: score at a long side of at least 16 px")
    if fid_weights is not None and not fid_reference:
        raise StylecastError("--fid-weights needs --fid-reference IMAGES to compare the outputs with")
    methods = [parse_method(spec) for spec in method]
    vgg = load_loss_net(loss_net, [GATYS_CONTENT_LAYER, *GATYS_STYLE_LAYERS], "cpu", loss_net_weights)
    photos = [path for path, _ in expand_inputs(contents)]  # evaluation reads files; their subfolders do not matter
    evaluation = Evaluation(style=style, contents=photos, methods=methods, out_dir=out,
                            size=size, loss_net=loss_net, net_id=vgg.net_id, fid_weights=fid_weights,
                            fid_reference=[path for path, _ in expand_inputs(fid_reference)] if fid_reference else [])
    evaluator = Evaluator(evaluation, vgg)
    with Progress(TextColumn("[bold]evaluate"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()) as bar:
        task = bar.add_task("evaluate", total=len(evaluation.contents) * len(methods))
        report = evaluator.run(progress=lambda n: bar.advance(task, n))
    for row in report["summary"]:
        seconds = "n/a" if row["seconds_per_image"] is None else f"{row['seconds_per_image']:.3g} s"
        typer.echo(f"{row['method']}: content {row['content_loss']:.3g}, style {row['style_loss']:.3g}, "
                   f"SSIM {row['ssim']:.3f}, PSNR {row['psnr']:.1f} dB, {seconds}/image")
    fid = report["fid"]
    if isinstance(fid, dict):
        typer.echo("FID " + ", ".join(f"{name} {value:.1f}" for name, value in fid["values"].items()))
    else:
        typer.echo(f"FID {fid}")
    typer.echo(f"wrote {out / 'report.json'}, {out / 'report.md'}, {out / 'contact.png'}")


STYLES = Path("styles")
HELDOUT = STYLES / "heldout.sha256"
PHOTOS = Path("../shared/photos")
RESULTS = Path("benchmarks/results/quality")

# Options shared by quality-reference, quality and recipe-ab.
HeldoutPhotos = Annotated[Path, typer.Option(help="Folder holding the held-out photos.")]
StylesDir = Annotated[Path, typer.Option(help="Where style images, presets and heldout.sha256 live.")]
HeldoutList = Annotated[Path | None, typer.Option(help="sha256 list of the held-out photos.")]
ReferenceDir = Annotated[Path | None, typer.Option(help="Reference folder (default: benchmarks/results/quality/"
                                                        "<style>/gatys-reference).")]
Crop = Annotated[int, typer.Option(help="Square centre crop scored (256: the yardstick; it keys the reference).")]
Losses = Annotated[str, typer.Option(help="project,examples (both yardsticks), or one of them: the project loss "
                                          "alone halves the reference's CPU cost.")]
Vgg16Weights = Annotated[Path | None, typer.Option(help="Converted VGG16 safetensors (default: the cache).")]


def _yardstick(style: str, styles_dir: Path, photos: Path, heldout: Path | None, reference: Path | None,
               steps: int, loss_net_weights: Path | None, threads: int, crop: int, losses: str,
               device: str = "cpu"):  # noqa: ANN202 - a Yardstick
    import torch

    from stylecast.benchmarks.quality.yardstick import for_style
    from stylecast.train.trainer import pick_device

    if threads < 1:
        raise StylecastError(f"--threads {threads}: must be at least 1")
    torch.set_num_threads(threads)
    return for_style(style, styles_dir, photos, heldout or styles_dir / HELDOUT.name, reference, steps,
                     loss_net_weights, crop, str(pick_device(device)),
                     tuple(name.strip() for name in losses.split(",") if name.strip()))


def _need_project(losses: str, why: str) -> None:
    if "project" not in losses.split(","):
        raise StylecastError(f"--losses {losses}: include project ({why})")


def quality_reference(
    style: Annotated[str, typer.Option(help="Style name (styles/<style>.toml and its painting).")],
    photos: HeldoutPhotos = PHOTOS,
    styles_dir: StylesDir = STYLES,
    heldout: HeldoutList = None,
    reference: ReferenceDir = None,
    steps: Annotated[int, typer.Option(help="L-BFGS iterations (300: the converged reference).")] = 300,
    device: Annotated[str, typer.Option(help="cpu, cuda or auto (CUDA: minutes instead of CPU-hours).")] = "cpu",
    threads: Annotated[int, typer.Option(help="torch threads.")] = 2,
    crop: Crop = 256,
    losses: Losses = "project,examples",
    loss_net_weights: Vgg16Weights = None,
) -> None:
    """Compute the Gatys reference of a style once (resumable per photo): what `stylecast quality` scores against."""
    need_torch()
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from stylecast.benchmarks.quality.yardstick import compute_reference

    ys = _yardstick(style, styles_dir, photos, heldout, reference, steps, loss_net_weights, threads, crop, losses, device)
    todo = ys.missing()
    typer.echo(f"{len(todo)} of {len(ys.photos) * len(ys.conventions)} references to compute in {ys.reference_dir}")
    with Progress(TextColumn("[bold]gatys {task.fields[what]}"), BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn()) as bar:
        for convention, photo in todo:
            task = bar.add_task("gatys", total=ys.steps, what=f"{convention.name} {photo.name}")
            record = compute_reference(ys, convention, photo, on_step=lambda _, t=task: bar.advance(t))
            typer.echo(f"{convention.name} {photo.name}: {record['checkpoints'][str(ys.steps)]['total']:.4g} "
                       f"after {ys.steps} iterations, {record['cpu_seconds']:.0f} CPU-s")


def quality(
    model: Annotated[Path, typer.Argument(help="A checkpoint (.safetensors) or an ONNX export.")],
    style: Annotated[str | None, typer.Option(help="Style name (styles/<style>.toml and its painting); a single-style "
                                                   "model's default is its own. A multi-style model: NAME, one of "
                                                   "its styles, or all (a report per style and a summary).")] = None,
    out: Annotated[Path | None, typer.Option(help="Report folder (default: benchmarks/results/quality/<style>; a "
                                                  "multi-style model's: .../quality/<model>, a folder per style)."
                                             )] = None,
    photos: HeldoutPhotos = PHOTOS,
    styles_dir: StylesDir = STYLES,
    heldout: HeldoutList = None,
    reference: ReferenceDir = None,
    steps: Annotated[int, typer.Option(help="Iterations of the reference to compare with.")] = 300,
    input_pad: Annotated[int | None, typer.Option(help="Score a checkpoint as if it reflect-padded its input by N px "
                                                       "(the runtime-pad remedy, without retraining).")] = None,
    threads: Annotated[int, typer.Option(help="torch threads.")] = 2,
    crop: Crop = 256,
    losses: Losses = "project,examples",
    loss_net_weights: Vgg16Weights = None,
) -> None:
    """Score a model against the style's Gatys reference: loss ratios, style term, 'matches Gatys after N', border
    measure, still-camera flicker."""
    need_torch()
    from stylecast.benchmarks.quality.multistyle import (
        ALL,
        chosen_styles,
        held_styles,
        missing_reference,
        write_summary,
    )
    from stylecast.benchmarks.quality.yardstick import model_stylizer, report_dict, score, write_report
    from stylecast.runtime.images import load_image

    name, held = held_styles(model)
    multi = len(held) > 1
    folder = out or RESULTS / (name if multi else held[0])
    reports: dict[str, dict | None] = {}
    for one in chosen_styles(model, held, style):
        ys = _yardstick(one, styles_dir, photos, heldout, reference, steps, loss_net_weights, threads, crop, losses)
        missing = missing_reference(ys, one)
        if missing and style != ALL:
            raise StylecastError(missing)
        if missing:
            typer.echo(f"{one}: skipped, {missing}")
            reports[one] = None
            continue
        stylize, meta = model_stylizer(model, input_pad, one)
        scored = score(ys, stylize)
        extra = {"style": one, "input_pad_override": input_pad, **({"model_styles": held} if multi else {})}
        report = report_dict(ys, scored, model, meta, extra)
        where = folder / one if multi else folder
        write_report(ys, scored, report, where, load_image(ys.style_image).rgb)
        _echo_scores(ys, report, where, f"{one}: " if multi else "")
        reports[one] = report
    if style == ALL:
        write_summary(model, [c.name for c in ys.conventions], reports, folder)
        typer.echo(f"wrote {folder / 'summary.md'}, summary.json")


def _echo_scores(ys, report: dict, folder: Path, prefix: str) -> None:  # noqa: ANN001 - a Yardstick
    """A report's figures on the terminal, each line led by ``prefix`` (a multi-style model's style)."""
    s = report["summary"]
    for c in ys.conventions:
        r = s[c.name]
        typer.echo(f"{prefix}{c.name} loss: {r['ratio']['median']:.2f}x Gatys-{ys.steps} (range {r['ratio']['min']:.2f}"
                   f"–{r['ratio']['max']:.2f}), style term {r['style_ratio']['median']:.2f}x, matches Gatys after "
                   f"{r['matches_after_median']} iterations (median)")
    flicker = s["flicker"]
    shown = ["n/a" if ratio is None else f"{ratio:.2f}"
             for ratio in (flicker["ratio"], flicker["blended"]["ratio"], flicker["held"]["ratio"])]
    typer.echo(f"{prefix}border ratio {s['border_ratio']['median']:.2f} (photos {s['photo_border_ratio']:.2f}); "
               f"still-camera flicker ratio {shown[0]} (with --temporal-blend {flicker['blended']['temporal_blend']:g}: "
               f"{shown[1]}; with --input-hold {flicker['held']['input_hold']:g}: {shown[2]}); "
               f"wrote {folder / 'report.md'}, report.json, contact.jpg")


def quality_curve(
    run_dir: Annotated[Path, typer.Argument(help="A training run's folder (its snapshots/, from --snapshot-every).")],
    style: Annotated[str | None, typer.Option(help="The run's style (styles/<style>.toml and its painting); a "
                                                   "single-style run's default is its own. A multi-style run: NAME, "
                                                   "one of its styles, or all (the mean over its styles).")] = None,
    out: Annotated[Path | None, typer.Option(help="Folder for curve.{json,md,png} (default: benchmarks/results/"
                                                  "quality/<style>; a multi-style run's: .../quality/<model>/<style>, "
                                                  "with all .../quality/<model>/mean-curve.*).")] = None,
    photos: HeldoutPhotos = PHOTOS,
    styles_dir: StylesDir = STYLES,
    heldout: HeldoutList = None,
    reference: ReferenceDir = None,
    steps: Annotated[int, typer.Option(help="Iterations of the reference to compare with.")] = 300,
    threads: Annotated[int, typer.Option(help="torch threads.")] = 2,
    crop: Crop = 256,
    losses: Losses = "project,examples",
    loss_net_weights: Vgg16Weights = None,
) -> None:
    """Score every snapshot of a run with the yardstick: quality against training CPU-hours, and the hours a
    power-law fit says the 1.4x target needs."""
    need_torch()
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from stylecast.benchmarks.quality import curve
    from stylecast.benchmarks.quality.multistyle import ALL, chosen_styles, missing_reference

    _need_project(losses, "the curve's target is under it")
    name, held = curve.run_styles(run_dir)
    multi = len(held) > 1
    # a single-style run's snapshots are checked against the painting of the --style given
    chosen = chosen_styles(run_dir, held, style) if multi or style == ALL else [style or held[0]]
    yardsticks = {one: _yardstick(one, styles_dir, photos, heldout, reference, steps, loss_net_weights, threads, crop,
                                  losses) for one in chosen}
    for one, ys in yardsticks.items():
        missing = missing_reference(ys, one)
        if missing:
            raise StylecastError(missing)
    with Progress(TextColumn("[bold]score snapshots"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()) as bar:
        task = bar.add_task("score", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        if style == ALL:
            report = curve.mean_curve(yardsticks, run_dir, progress)
        else:
            report = curve.curve(yardsticks[chosen[0]], run_dir, progress, chosen[0] if multi else None)
    # a multi-style run's curves go under its net's name: a style's beside its report, the mean beside the summary
    default = RESULTS / name / ("" if style == ALL else chosen[0]) if multi else RESULTS / chosen[0]
    folder = out or default
    written = curve.write(report, folder)
    last, fit = report["snapshots"][-1], report["fit"]
    ratio = last["mean"]["project"] if "mean" in last else last["summary"]["project"]["ratio"]["median"]
    estimate = f"about {fit['hours']:.0f} CPU-hours" if fit["hours"] is not None else f"no estimate ({fit['why']})"
    typer.echo(f"{len(report['snapshots'])} snapshots; at {last['cpu_hours']:.2f} CPU-hours the "
               f"{'mean ' if 'mean' in last else ''}project ratio is {ratio:.2f}x; {curve.TARGET_RATIO:g}x: "
               f"{estimate}; wrote {written}, {written.with_suffix('.json').name}, {written.with_suffix('.png').name}")


def quality_heldout(
    photos: Annotated[Path, typer.Argument(help="Folder of candidate photos.")] = PHOTOS,
    count: Annotated[int, typer.Option(help="How many to hold out.")] = 8,
    skip_prefix: Annotated[str, typer.Option(help="Never pick these (opencv's cv_* samples have no licence to show "
                                                  "them in committed contact sheets); empty: none.")] = "cv_",
) -> None:
    """Print a held-out list (the photos with the smallest sha256) in the format of styles/heldout.sha256."""
    need_torch()
    from stylecast.train.data import list_images, pick_heldout

    candidates = [p for p in list_images(photos) if not (skip_prefix and p.name.startswith(skip_prefix))]
    for digest, path in pick_heldout(candidates, count).items():
        typer.echo(f"{digest}  {path.name}")


def recipe_ab(
    variants: Annotated[Path | None, typer.Option(help="Variants file (TOML: style, budget_cpu_min, [base], "
                                                       "[variants.NAME]), e.g. benchmarks/recipes/wave.toml.")] = None,
    style: Annotated[str | None, typer.Option(help="Style (default: the variants file's).")] = None,
    variant: Annotated[list[str] | None, typer.Option(help="NAME:key=value,... (repeatable; adds to or replaces the "
                                                           "file's).")] = None,
    only: Annotated[list[str] | None, typer.Option(help="Train only these variants now (the report lists all "
                                                        "finished ones).")] = None,
    budget_cpu_min: Annotated[float | None, typer.Option(help="CPU minutes per variant (process CPU time).")] = None,
    data: Annotated[Path, typer.Option(help="Training photos (the held-out ones are excluded).")] = PHOTOS,
    photos: HeldoutPhotos = PHOTOS,
    styles_dir: StylesDir = STYLES,
    runs: Annotated[Path, typer.Option(help="Where each variant's run and model go (a folder per machine class)."
                                       )] = Path("runs/recipe-ab"),
    out: Annotated[Path, typer.Option(help="Report folder (<style>-<machine class>.md, .json, .jpg)."
                                      )] = Path("benchmarks/results/recipe-ab"),
    reference: Annotated[Path | None, typer.Option(help="Gatys reference folder (computed first where missing).")] = None,
    threads: Annotated[int, typer.Option(help="torch threads, equal for every variant.")] = 2,
    crop: Crop = 256,
    losses: Losses = "project,examples",
    reference_steps: Annotated[int, typer.Option(help="Iterations of the Gatys reference.")] = 300,
    loss_net_weights: Vgg16Weights = None,
    readme: Annotated[Path | None, typer.Option(help="A README whose recipe-ab-<style> markers get the table too.")] = None,
) -> None:
    """Train recipe variants at an equal CPU budget, score each with the yardstick, write the A/B table."""
    need_torch()
    from stylecast.benchmarks.report import readme_parts, splice_block
    from stylecast.benchmarks.studies import recipe_ab as ab

    plan = ab.load_plan(variants) if variants else ab.Plan(style or "", 0.0)
    plan.style = style or plan.style
    if not plan.style:
        raise StylecastError("give --style or a --variants file that names one")
    if budget_cpu_min is not None:
        plan.budget_cpu_s = budget_cpu_min * 60
    plan.variants.update(ab.parse_variant(spec) for spec in variant or [])
    ab.check(plan)
    if readme:
        readme_parts(readme, ab.readme_block(plan.style))  # checked before hours of training, not after
    _need_project(losses, "the A/B ranks by it")
    chosen = only or list(plan.variants)
    unknown = sorted(set(chosen) - set(plan.variants))
    if unknown:
        raise StylecastError(f"--only {unknown}: not among the variants {sorted(plan.variants)}")
    ys = _yardstick(plan.style, styles_dir, photos, None, reference, reference_steps, loss_net_weights, threads, crop,
                    losses)
    ab.ensure_reference(ys)
    reports, name_here = {}, ab.stem(plan.style)
    for name in plan.variants:
        finished = (runs / name_here / name / "quality" / "report.json").is_file()
        if name in chosen or finished:
            typer.echo(f"variant {name}: {'scored already' if finished else 'training'}")
            reports[name] = ab.run_variant(plan, name, ys, data, styles_dir, runs / name_here, loss_net_weights)
    result, text = ab.table(plan, reports, threads)
    ab.write(out, name_here, result, text)
    ab.sheet(plan, result["rows"], ys, runs / name_here, out / f"{name_here}.jpg")
    typer.echo(text)
    typer.echo(f"wrote {out / (name_here + '.md')}, .json and .jpg (the variants side by side)")
    if readme:
        splice_block(readme, ab.readme_block(plan.style), ab.readme_tables(out, plan.style))
        typer.echo(f"and every machine class's table in {readme}")
