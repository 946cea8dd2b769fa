"""`stylecast compress`: split -> prune -> distil students -> export + evaluate -> select -> report.

Every stage writes a manifest (see manifest.py); a re-run skips finished stages whose inputs are
unchanged and continues an interrupted distillation from its saved state.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from stylecast.compress import manifest
from stylecast.compress.distill import DistillConfig, DistillTrainer, DistillWeights
from stylecast.compress.prune import PruneTarget, prune_checkpoint
from stylecast.compress.report import render_markdown
from stylecast.compress.students import (
    ENGINES,
    TARGET,
    Entry,
    cost,
    deployed_ms,
    latencies,
    perceptual,
    quality,
    verdict,
)
from stylecast.export.pipeline import ExportRequest, onnx_path, run_export
from stylecast.export.precisions import Int8Settings
from stylecast.runtime.artifacts import read_metadata, sha256_file
from stylecast.runtime.errors import StylecastError
from stylecast.runtime.gallery import make_gallery
from stylecast.runtime.images import atomic_write, fit, load_image
from stylecast.runtime.machine import usable_cores
from stylecast.train.checkpoint import load_model, save_model
from stylecast.train.data import list_images
from stylecast.train.model import ArchConfig
from stylecast.train.trainer import data_fingerprint

PRUNED = "pruned"


@dataclass
class CompressPlan:
    teacher: Path
    data: Path
    style_image: Path
    out: Path  # models/<style>-slim.safetensors
    work: Path  # runs/compress/<style>: stage folders and manifests
    report_dir: Path
    students: dict[str, str] = field(default_factory=lambda: {"w16": "width=16"})  # name -> --arch spec
    prune_flops: float | None = 28.0  # % of the teacher's FLOPs for the pruned student; None = no pruning
    steps: int = 600
    prune_steps: int | None = None  # distillation steps of the pruned student (None: ``steps``)
    batch: int = 4
    crop: int = 128
    holdout: int = 10
    eval_size: int = 512
    feature_weight: float = 0.0
    # Where the other students start: "pruned" (this run's distilled pruned student, see warm_start.py), a
    # checkpoint of the same net family, or "none" (random weights).
    warm_start: str = "pruned"
    # Students trained before (e.g. the slim model this run may replace), scored and selectable beside the new ones.
    compare: dict[str, Path] = field(default_factory=dict)
    calibration_count: int = 16
    style_weight: float = 1e4  # 10x the distill command's: the Gram term otherwise stays ~4% of the loss
    lr_schedule: str = "cosine"
    precision: str = "auto"
    loss_net_weights: Path | None = None
    parity_images: Path = Path("benchmarks/photos")
    latency_threads: int = field(default_factory=usable_cores)


def split(plan: CompressPlan, log: Callable[[str], None]) -> tuple[Path, list[Path]]:
    """Every k-th photo (sorted by name) is held out; the rest become a folder of links to train on."""
    files = list_images(plan.data)
    if len(files) <= plan.holdout:
        raise StylecastError(f"{plan.data}: {len(files)} photos; need more than --holdout {plan.holdout}")
    stride = len(files) // plan.holdout
    held = files[::stride][:plan.holdout]
    stage = plan.work / "split"
    train_dir = stage / "train"
    settings = {"data": data_fingerprint(files), "holdout": plan.holdout}
    if manifest.completed(stage, {}, settings) and train_dir.is_dir():
        log("split: up to date")
        return train_dir, held
    train_dir.mkdir(parents=True, exist_ok=True)
    for old in train_dir.iterdir():
        old.unlink()
    for i, path in enumerate(f for f in files if f not in held):
        (train_dir / f"{i:05d}{path.suffix.lower()}").symlink_to(path.resolve())
    manifest.record(stage, "split", {}, settings, {}, {"held_out": [p.name for p in held],
                                                       "train": len(files) - len(held)})
    log(f"split: {len(files) - len(held)} training photos, {len(held)} held out")
    return train_dir, held


def prune_stage(plan: CompressPlan, log: Callable[[str], None]) -> tuple[Path, str]:
    stage = plan.work / "prune"
    out = stage / "pruned-init.safetensors"
    settings = {"target_flops": plan.prune_flops, "size": plan.eval_size, "divisor": 8}
    done = manifest.completed(stage, {"teacher": plan.teacher}, settings)
    if done:
        log("prune: up to date")
        return out, done["results"]["spec"]
    result = prune_checkpoint(plan.teacher, out, PruneTarget(flops_percent=plan.prune_flops, size=plan.eval_size))
    manifest.record(stage, "prune", {"teacher": plan.teacher}, settings, {"pruned": out},
                    {"spec": result.spec, "flops_percent": result.flops_percent})
    log(f"prune: {result.flops_percent:.1f}% of the teacher's FLOPs, {result.spec}")
    return out, result.spec


def distill_stage(plan: CompressPlan, name: str, spec: str, train_dir: Path, init: Path | None,
                  log: Callable[[str], None], warm: bool = False) -> Path:
    stage = plan.work / name
    out = stage / f"{name}.safetensors"
    steps = plan.prune_steps if init and not warm and plan.prune_steps else plan.steps
    inputs = {"teacher": plan.teacher, **({"init": init} if init else {})}
    settings = {"arch": spec, "steps": steps, "batch": plan.batch, "crop": plan.crop, "warm_start": warm,
                "feature_weight": plan.feature_weight, "data": data_fingerprint(list_images(train_dir)),
                "style_weight": plan.style_weight, "lr_schedule": plan.lr_schedule}
    if manifest.completed(stage, inputs, settings):
        log(f"{name}: up to date")
        return out
    style = load_model(plan.teacher).meta["style"]
    config = DistillConfig(
        style=style, style_image=plan.style_image, data=train_dir, out=out, run_dir=stage / "run",
        steps=steps, batch=plan.batch, crop=plan.crop, scale=(max(160, plan.crop), max(320, 2 * plan.crop)),
        precision=plan.precision, arch=ArchConfig.from_spec(spec), loss_net_weights=plan.loss_net_weights,
        teacher=plan.teacher, init=init, warm_start=warm,
        method="warm-start+distill" if warm else "prune+distill" if init else "distill",
        distill=DistillWeights(feature=plan.feature_weight, style=plan.style_weight), checkpoint_every=50,
        lr_schedule=plan.lr_schedule,
    )
    resume = (config.run_dir / "state.safetensors").is_file()
    start = f", warm-started from {init.name}" if warm and init else ""
    log(f"{name}: {'resuming' if resume else 'distilling'} {spec} for {steps} steps{start}")
    DistillTrainer(config).run(resume=resume)
    manifest.record(stage, f"distill {name}", inputs, settings, {"student": out})
    return out


def export_stage(plan: CompressPlan, name: str, checkpoint: Path, calibration: Path,
                 log: Callable[[str], None]) -> tuple[dict[str, Path], dict]:
    """The same export path as any model: parity-checked fp32 and int8 ONNX (the int8 one searched and calibrated
    on training photos only); an int8 below its floor is reported, not fatal, so every student gets a row."""
    out_dir = plan.work / name / "onnx"
    request = ExportRequest(checkpoint=checkpoint, out_dir=out_dir, parity_images=plan.parity_images,
                            precisions=["fp32", "int8"], int8=Int8Settings(calibration, plan.calibration_count),
                            allow_below_floor=frozenset({"int8"}))
    report = run_export(request, log=log)
    int8 = next(e for e in report["exports"] if e["precision"] == "int8")
    parity = {"int8_psnr_min": min(p["psnr_min"] for p in int8["parity"]), "int8_passed": int8["passed"],
              "int8_fp32_convs": int8.get("fp32_convs", {}).get("leading")}
    return {p: onnx_path(out_dir, report["name"], p) for p in request.precisions}, parity


def evaluate(plan: CompressPlan, checkpoints: dict[str, Path], held: list[Path], calibration: Path,
             log: Callable[[str], None],
             tick: Callable[[], None] = lambda: None) -> tuple[dict, dict[str, list[np.ndarray]], list[np.ndarray]]:
    entries, int8 = [], {}
    for name, path in checkpoints.items():
        files, int8[name] = export_stage(plan, name, path, calibration, log)
        entries.append(Entry(name, load_model(path), files))
    teacher, students = entries[0], entries[1:]
    size = plan.eval_size
    photos = [fit(load_image(p).rgb, size, size) for p in held]
    loss = perceptual(plan.style_image, teacher.model.meta, plan.loss_net_weights)
    means, outputs = quality(teacher, students, photos, loss, tick)
    log(f"timing {len(entries)} models on {len(ENGINES)} engines at {size}²")
    latency = latencies(entries, size, threads=plan.latency_threads)
    rows = {}
    for entry in entries:
        mine, base = latency[entry.name], latency[teacher.name]
        row = {**cost(entry), "checkpoint": str(checkpoints[entry.name]),
               "sha256": sha256_file(checkpoints[entry.name]), "onnx": {k: str(v) for k, v in entry.onnx.items()},
               "latency_ms": mine, **int8[entry.name],
               "speedup": {k: round(base[k] / v, 2) for k, v in mine.items()
                           if isinstance(v, float) and isinstance(base.get(k), float)},
               "psnr": round(means[entry.name]["psnr"], 2), "ssim": round(means[entry.name]["ssim"], 4),
               "style_loss": means[entry.name]["style"], "content_loss": means[entry.name]["content"]}
        rows[entry.name] = row
    for entry in students:
        rows[entry.name].update(verdict(rows[entry.name], rows[teacher.name]))
    return rows, outputs, photos


def select(rows: dict[str, dict], teacher: str) -> str:
    """The fastest deployed student meeting the target (by its best engine at the eval size, not by FLOPs). If none
    does: among the students cheap enough (or all, if none is), the one meeting most checks, then the highest SSIM."""
    students = {k: v for k, v in rows.items() if k != teacher}
    if not students:
        raise StylecastError("no student to choose from: give --student NAME or a --prune-flops percentage")
    passing = [k for k, v in students.items() if v["meets_target"]]
    if passing:
        return min(passing, key=lambda k: deployed_ms(students[k]))
    cheap = [k for k, v in students.items() if v["meets"]["flops_ratio"]] or list(students)
    return max(cheap, key=lambda k: (sum(students[k]["meets"].values()), students[k]["ssim"]))


def warm_source(plan: CompressPlan, checkpoints: dict[str, Path]) -> Path | None:
    """The checkpoint a candidate student warm-starts from, if any."""
    if plan.warm_start == "none":
        return None
    if plan.warm_start == PRUNED:
        return checkpoints.get(PRUNED)  # None when this run does not prune
    return Path(plan.warm_start)


def teacher_facts(plan: CompressPlan) -> dict[str, str]:
    """The teacher as the report names it: file, sha256, and the photos its own training left out."""
    return {"teacher": str(plan.teacher), "teacher_sha256": sha256_file(plan.teacher),
            "teacher_excluded": read_metadata(plan.teacher).get("excluded_photos", "none")}


def write_report(plan: CompressPlan, report: dict) -> None:
    plan.report_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(plan.report_dir / "report.json", lambda tmp: tmp.write_text(json.dumps(report, indent=2) + "\n"))
    atomic_write(plan.report_dir / "report.md", lambda tmp: tmp.write_text(render_markdown(report)))


def run_compress(plan: CompressPlan, log: Callable[[str], None] = print,
                 tick: Callable[[], None] = lambda: None) -> dict:
    train_dir, held = split(plan, log)
    specs: dict[str, str] = {}
    init: dict[str, Path] = {}
    if plan.prune_flops is not None:  # first: the likeliest pick, so an interrupted run has it soonest
        init[PRUNED], specs[PRUNED] = prune_stage(plan, log)
    specs.update(plan.students)
    checkpoints = {"teacher": plan.teacher}
    for name, spec in specs.items():
        warm = warm_source(plan, checkpoints) if name != PRUNED else None
        checkpoints[name] = distill_stage(plan, name, spec, train_dir, warm or init.get(name), log, warm is not None)
    checkpoints.update(plan.compare)
    stage = plan.work / "evaluate"
    settings = {"eval_size": plan.eval_size, "held_out": [p.name for p in held], "out": str(plan.out),
                "report_dir": str(plan.report_dir)}
    done = manifest.completed(stage, checkpoints, settings)
    if done:
        log("evaluate: up to date")
        report = {**json.loads((plan.report_dir / "report.json").read_text()), **teacher_facts(plan)}
        write_report(plan, report)  # what the renderer says now, from the measured figures
        return report
    rows, outputs, photos = evaluate(plan, checkpoints, held, train_dir, log, tick)
    chosen = select(rows, "teacher")
    source = load_model(checkpoints[chosen])
    meta = {k: v for k, v in source.meta.items() if k not in ("arch", "versions", "stylecast.format", "precision")}
    meta.update(student=chosen, selected_from=",".join(specs), teacher_sha256=sha256_file(plan.teacher),
                report=str(plan.report_dir / "report.md"), arch_spec=source.model.config.to_spec())
    save_model(plan.out, source.model, meta, source.meta.get("weights_dtype", "fp32"))
    for suffix in (".log.csv", ".loss.png"):  # its distillation log and curve travel with it, as a teacher's do
        trail = checkpoints[chosen].with_suffix(suffix)
        if trail.is_file():
            atomic_write(plan.out.with_suffix(suffix), lambda tmp, src=trail: shutil.copyfile(src, tmp))
    report = {**teacher_facts(plan), "slim": str(plan.out),
              "slim_sha256": sha256_file(plan.out), "selected": chosen, "target": TARGET,
              "held_out": [p.name for p in held], "eval_size": plan.eval_size,
              "plan": json.loads(json.dumps(asdict(plan), default=str)),
              "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "models": rows}
    write_report(plan, report)
    pairs = [(np.hstack([photo, t]), s)
             for photo, t, s in zip(photos, outputs["teacher"], outputs[chosen], strict=True)]
    gallery = plan.report_dir / "side-by-side.jpg"
    make_gallery(pairs, gallery, title=f"photo | teacher | {plan.out.stem} ({chosen}), held-out at {plan.eval_size}px")
    manifest.record(stage, "evaluate+select", checkpoints, settings,
                    {"slim": plan.out, "report": plan.report_dir / "report.json", "side_by_side": gallery})
    return report
