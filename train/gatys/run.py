"""One `stylecast optimize` job: check the files, run the optimiser with a live bar, write every artifact.

Next to ``OUT`` go ``OUT.json`` (settings, source hashes, loss network, versions, optimisation
time: what `stylecast evaluate` reads), ``<stem>.log.csv`` (losses per iteration) and the
loss curve PNG. Snapshots (``--snapshot 50:PATH``) get their own sidecar with their own time.
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from stylecast.runtime.artifacts import FORMAT_KEY, sha256_file, sidecar_path, tool_versions
from stylecast.runtime.errors import StylecastError
from stylecast.runtime.images import atomic_write, load_image, save_image
from stylecast.train.gatys import pixels
from stylecast.train.gatys.optimize import GatysConfig, GatysOptimizer, StepReport
from stylecast.train.plots import plot_losses
from stylecast.train.vgg import load_loss_net

if TYPE_CHECKING:
    import torch

LOG_FIELDS = ["step", "scale", "content", "style", "tv", "total", "seconds", "cpu_seconds"]
SIDECAR_FORMAT = "optimized-image"


@dataclass
class OptimizeJob:
    content: Path
    styles: list[tuple[Path, float]]
    out: Path
    config: GatysConfig
    curve: Path
    loss_net: str = "vgg19"
    loss_net_weights: Path | None = None
    snapshots: dict[int, Path] = field(default_factory=dict)
    allow_huge: bool = False

    @property
    def log(self) -> Path:
        return self.out.with_name(f"{self.out.stem}.log.csv")

    def check_paths(self) -> None:
        """Refuse before any work: no output may overwrite an input, and snapshots must fall inside the run."""
        inputs = {self.content.resolve(), *(p.resolve() for p, _ in self.styles)}
        for dest in (self.out, self.curve, self.log, *self.snapshots.values()):
            if dest.resolve() in inputs:
                raise StylecastError(f"{dest}: output would overwrite an input; choose another path")
        total = sum(self.config.steps)
        late = [step for step in self.snapshots if not 0 < step <= total]
        if late:
            raise StylecastError(f"--snapshot {late}: outside the run's {total} iterations")


def write_log(path: Path, rows: list[dict]) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, LOG_FIELDS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)

    atomic_write(path, write)


def save_with_sidecar(dest: Path, rgb: np.ndarray, meta: dict) -> None:
    save_image(dest, rgb)
    atomic_write(sidecar_path(dest), lambda tmp: tmp.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n"))


def _metadata(job: OptimizeJob, net_id: str, net_input: str) -> dict:
    cfg = job.config
    return {
        FORMAT_KEY: SIDECAR_FORMAT, "method": "gatys",
        "style": "+".join(p.stem for p, _ in job.styles), "arch": f"gatys-{job.loss_net}", "precision": cfg.precision,
        "content": job.content.name, "content_sha256": sha256_file(job.content),
        "styles": [{"file": p.name, "sha256": sha256_file(p), "weight": w} for p, w in job.styles],
        "loss_net": net_id, "loss_net_input": net_input, "config": cfg.as_dict(),
        "optimizer": pixels.settings(cfg.optimizer, cfg.lr),
        "versions": json.loads(tool_versions("torch")), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def run_job(job: OptimizeJob) -> float:
    """Run ``job``; returns the optimisation time in seconds (loading excluded)."""
    import torch

    job.config.check()
    job.check_paths()
    content = load_image(job.content, allow_huge=job.allow_huge).rgb
    styles = [(load_image(path, allow_huge=job.allow_huge).rgb, weight) for path, weight in job.styles]
    cfg = job.config
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    vgg = load_loss_net(job.loss_net, [cfg.content_layer, *cfg.style_layers], device, job.loss_net_weights)
    _resolve_precision(cfg, device)
    meta = _metadata(job, vgg.net_id, vgg.input)
    rows: list[dict] = []

    columns = [TextColumn(f"[bold]optimize {meta['style']}[/] {{task.fields[scale]}}px"), BarColumn(),
               MofNCompleteColumn(), TextColumn("{task.fields[losses]}"), TimeRemainingColumn()]
    with Progress(*columns) as bar:
        task = bar.add_task("optimize", total=sum(cfg.steps), scale=cfg.scales[0], losses="")

        def on_step(report: StepReport) -> None:
            rows.append({"step": report.step, "scale": report.scale, **report.losses, "seconds": round(report.seconds, 3),
                         "cpu_seconds": round(report.cpu_seconds, 3)})
            losses = report.losses
            bar.update(task, completed=report.step, scale=report.scale,
                       losses=f"content {losses['content']:.3g} style {losses['style']:.3g} total {losses['total']:.3g}")
            if report.step in job.snapshots:
                save_with_sidecar(job.snapshots[report.step], report.image(), {**meta, **_timing(rows[-1])})

        result = GatysOptimizer(vgg, cfg).run(content, styles, on_step)
    save_with_sidecar(job.out, result, {**meta, **_timing(rows[-1])})
    write_log(job.log, rows)
    plot_losses(job.log, job.curve, title=f"gatys {meta['style']} ({job.loss_net}, {cfg.optimizer})",
                series=("content", "style", "total"))
    return rows[-1]["seconds"]


def _resolve_precision(cfg: GatysConfig, device: torch.device) -> None:
    """``auto`` becomes what the precision probe measured faster; fp16 needs loss scaling, which L-BFGS has not."""
    from stylecast.train.precision import resolve_precision

    requested = cfg.precision
    choice = resolve_precision(device, requested)
    cfg.precision = "fp32" if choice.precision == "fp16" else choice.precision
    print(f"precision {requested} -> {cfg.precision} on {device}: {choice.reason}", flush=True)


def _timing(row: dict) -> dict:
    """Where a run (or a snapshot of it) stood: iterations, wall and CPU seconds, weighted losses."""
    return {"steps": row["step"], "seconds": row["seconds"], "cpu_seconds": row["cpu_seconds"],
            "final_losses": {k: row[k] for k in ("content", "style", "tv", "total")}}
