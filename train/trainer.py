"""The training loop: resumable, interrupt-safe, single process or DDP (``torchrun``)."""

from __future__ import annotations

import csv
import functools
import hashlib
import json
import math
import os
import shutil
import signal
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

from stylecast.runtime.artifacts import sha256_file
from stylecast.runtime.errors import Interrupted, StylecastError
from stylecast.train.checkpoint import (
    load_model,
    load_state,
    read_metadata,
    save_model,
    save_state,
    snapshot_path,
    weights_dtype,
)
from stylecast.train.compiled import compiler_missing
from stylecast.train.data import (
    NOISE_KINDS,
    StepBatches,
    StepSampler,
    list_images,
    load_style_image,
    read_hash_list,
    step_noise,
)
from stylecast.train.data import without as without_photos
from stylecast.train.losses import STABILITY_LOSSES, LossWeights, PerceptualLoss, noise_stability
from stylecast.train.model import ArchConfig, TransformerNet
from stylecast.train.plots import plot_losses
from stylecast.train.precision import autocast_for, resolve_precision
from stylecast.train.settings import TrainSettings
from stylecast.train.vgg import VGGFeatures, load_loss_net


@dataclass(kw_only=True)
class TrainConfig(TrainSettings):
    """One training run: the settings (every field of TrainSettings, as the presets and the command line give them)
    and what they are applied to. ``arch`` and ``loss`` are the net and the loss the settings name unless given (a
    distilled student's own net); given, they are what trains, whatever the width and weight fields say."""

    style: str
    style_image: Path
    data: Path
    out: Path
    run_dir: Path
    arch: ArchConfig | None = None
    loss: LossWeights | None = None
    loss_net_weights: Path | None = None
    # The sha256 list of photos never to train on (the held-out evaluation photos): the file the ``exclude`` setting
    # names, found by train_config; None trains on every photo.
    exclude_list: Path | None = None
    # Start from this model's weights under these settings (a fine-tune, e.g. a new stability noise): the step
    # count, CPU time and batch stream carry on from the model's; the optimizer starts afresh.
    init: Path | None = None

    def __post_init__(self) -> None:
        if self.arch is None:
            self.arch = self.arch_config()
        if self.loss is None:
            self.loss = self.loss_weights()
        for name in ("steps", "batch", "crop", "checkpoint_every", "log_every"):
            if getattr(self, name) < 1:
                raise StylecastError(f"--{name.replace('_', '-')} {getattr(self, name)}: must be at least 1")
        if self.lr_schedule not in LR_SCHEDULES:
            raise StylecastError(f"--lr-schedule {self.lr_schedule}: choose {' or '.join(LR_SCHEDULES)}")
        weights_dtype(self.model_weights)
        if self.snapshot_every < 0:
            raise StylecastError(f"--snapshot-every {self.snapshot_every}: must be 0 (off) or at least 1")
        if self.stability_weight < 0 or self.stability_sigma <= 0:
            raise StylecastError("--stability-weight must be >= 0 and --stability-sigma > 0")
        if self.stability_noise not in NOISE_KINDS:
            raise StylecastError(f"--stability-noise {self.stability_noise}: choose {' or '.join(NOISE_KINDS)}")
        if self.stability_loss not in STABILITY_LOSSES:
            raise StylecastError(f"--stability-loss {self.stability_loss}: choose {' or '.join(STABILITY_LOSSES)}")

    def resume_key(self) -> dict[str, str]:
        """Settings that must match for a resume to continue the same run; ones added later only when set, so
        older runs still resume."""
        keys = ("style", "batch", "crop", "scale", "style_size", "lr", "seed", "loss_net")
        hyper = {k: getattr(self, k) for k in keys}
        if self.stability_weight:
            hyper.update(stability_weight=self.stability_weight, stability_sigma=self.stability_sigma)
            if self.stability_noise != "white":
                hyper.update(stability_noise=self.stability_noise)
            if self.stability_loss != "mse":
                hyper.update(stability_loss=self.stability_loss)
        if self.lr_schedule != "constant":
            hyper.update(lr_schedule=self.lr_schedule, lr_horizon=self.horizon)
        hyper["loss"] = self.loss.as_dict()
        key = {"arch": self.arch.to_json(), "hyperparameters": json.dumps(hyper, sort_keys=True)}
        if self.init:
            key["init_sha256"] = self.init_sha256
        return key

    @functools.cached_property
    def init_sha256(self) -> str:
        return sha256_file(self.init)

    @property
    def horizon(self) -> int:
        return self.lr_horizon or self.steps


LR_SCHEDULES = ("constant", "cosine")


def learning_rate(base: float, schedule: str, step: int, horizon: int) -> float:
    """The rate at ``step``: a pure function of the step, so a resumed run follows the same schedule."""
    if schedule == "constant":
        return base
    progress = min(step / max(horizon, 1), 1.0)
    return base * (0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * progress)))


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise StylecastError(f"--device {name}: CUDA is not available on this machine; use --device cpu")
    return torch.device(name)


def data_fingerprint(files: list[Path]) -> str:
    """Identifies the training set (names and sizes) without hashing gigabytes of photos."""
    digest = hashlib.sha256()
    for path in files:
        digest.update(f"{path.name}:{path.stat().st_size}\n".encode())
    return f"{len(files)} images, sha256 {digest.hexdigest()[:16]}"


class Trainer:
    """One job: turn a TrainConfig into a checkpoint, a loss log and a loss curve."""

    terms: tuple[str, ...] = ("content", "style", "tv", "total")  # the criterion's keys, logged and plotted

    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        self.distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
        if self.distributed and not dist.is_initialized():
            dist.init_process_group("nccl" if torch.cuda.is_available() and config.device != "cpu" else "gloo")
        self.rank = dist.get_rank() if self.distributed else 0
        self.world = dist.get_world_size() if self.distributed else 1
        self.device = pick_device(config.device)
        if self.device.type == "cuda" and self.distributed:
            self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        self.precision_choice = resolve_precision(self.device, config.precision)
        self.precision = self.precision_choice.precision
        self.interrupted = False
        self.data_id = ""
        self.cpu_seconds = 0.0  # process CPU time of the training steps, over all sittings of the run
        # With compile, a sitting's first step also builds the kernels: its CPU time is kept apart, so a CPU budget
        # buys the same training whether the compiler's cache was warm or cold.
        self.compile_cpu_seconds = 0.0
        if config.stability_weight:
            self.terms = (*self.terms[:-1], "stability", self.terms[-1])

    @property
    def main(self) -> bool:
        return self.rank == 0

    def _build(self) -> tuple[torch.nn.Module, torch.nn.Module, torch.optim.Optimizer]:
        torch.manual_seed(self.config.seed)
        model = self._student().to(self.device).train()
        criterion = self._criterion(model).to(self.device)
        if self.config.channels_last:
            model, criterion = model.to(memory_format=torch.channels_last), criterion.to(memory_format=torch.channels_last)
        # Only what trains: a net that adds a style keeps every other weight frozen, and out of Adam's reach.
        optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=self.config.lr)
        return model, criterion, optimizer

    def _student(self) -> TransformerNet:
        return TransformerNet(self.config.arch)

    def _loss_net(self, layers: list[str]) -> VGGFeatures:
        cfg = self.config
        net = load_loss_net(cfg.loss_net, layers, self.device, cfg.loss_net_weights)
        self.loss_net_id = net.net_id
        return net

    def _criterion(self, model: TransformerNet) -> torch.nn.Module:
        """Maps (output, input batch) to a dict of the ``terms`` losses; subclasses change what is learnt."""
        cfg = self.config
        vgg = self._loss_net([cfg.loss.content_layer, *cfg.loss.style_layers])
        style = load_style_image(cfg.style_image, cfg.style_size).to(self.device)
        return PerceptualLoss(vgg, style, cfg.loss)

    @property
    def log_fields(self) -> list[str]:
        return ["step", *self.terms, "seconds", "images_per_s", "cpu_seconds"]

    def curve_title(self) -> str:
        return f"{self.config.style}: training losses"

    def _meta(self, step: int) -> dict[str, str]:
        cfg = self.config
        return {
            "style": cfg.style,
            "style_image": cfg.style_image.name,
            "style_image_sha256": sha256_file(cfg.style_image),
            "loss_net": self.loss_net_id,
            "data": self.data_id,
            "train_precision": self.precision,
            "train_precision_reason": self.precision_choice.reason,
            "steps": str(step),
            "cpu_seconds": f"{self.cpu_seconds:.1f}",
            "compile_cpu_seconds": f"{self.compile_cpu_seconds:.1f}",
            "excluded_photos": f"{len(read_hash_list(cfg.exclude_list))} in {cfg.exclude_list.name}"
            if cfg.exclude_list else "none",
            **({"init": f"{cfg.init.name} (sha256 {cfg.init_sha256[:16]})"} if cfg.init else {}),
            **self.config.resume_key(),
        }

    def _check_init_arch(self, path: Path, arch: ArchConfig) -> None:
        """Refuse an ``--init`` net whose weights do not fit this run's net."""
        # The input padding holds no weights: a fine-tune may add it (the border remedy learnt inside the net).
        if replace(arch, input_pad=0) != replace(self.config.arch, input_pad=0):
            raise StylecastError(f"{path}: --init's architecture {arch.to_json()} differs from this "
                                 f"run's {self.config.arch.to_json()}; set --width etc. to match it")

    def _start_from(self, path: Path, model: TransformerNet) -> int:
        """Load ``--init``'s weights into ``model``; returns its step count, where this run carries on."""
        loaded = load_model(path)
        self._check_init_arch(path, loaded.model.config)
        steps = int(loaded.meta.get("steps", "0"))
        if steps >= self.config.steps:
            raise StylecastError(f"{path}: --init has trained {steps} steps already; pass --steps above that")
        model.load_state_dict(loaded.model.state_dict())
        self.cpu_seconds = float(loaded.meta.get("cpu_seconds", "0"))
        self.compile_cpu_seconds = float(loaded.meta.get("compile_cpu_seconds", "0"))
        return steps

    def _shipped(self, model: TransformerNet) -> TransformerNet:
        """The net the model file and snapshots hold: the trained one, unless a subclass builds it from that."""
        return model

    def _on_sigint(self, *_: object) -> None:
        self.interrupted = True

    def run(self, resume: bool = False) -> Path:
        cfg = self.config
        files = list_images(cfg.data)
        if cfg.exclude_list:
            files = without_photos(files, set(read_hash_list(cfg.exclude_list)))
        self.data_id = data_fingerprint(files)
        model, criterion, optimizer = self._build()
        state_path = cfg.run_dir / "state.safetensors"
        log_path = cfg.run_dir / "log.csv"
        start = 0
        if resume:
            if not state_path.is_file():
                raise StylecastError(f"{state_path}: nothing to resume; run without --resume to start")
            start = load_state(state_path, model, optimizer, self.config.resume_key())
            saved = read_metadata(state_path)
            self.cpu_seconds = float(saved.get("cpu_seconds", "0"))
            self.compile_cpu_seconds = float(saved.get("compile_cpu_seconds", "0"))
        elif state_path.exists():  # every rank checks, so none is left waiting in DDP
            raise StylecastError(f"{cfg.run_dir}: holds an earlier run; pass --resume or another --run-dir")
        elif cfg.init:
            start = self._start_from(cfg.init, model)
        train_model = model
        if cfg.compile:
            if why := compiler_missing(self.device):
                raise StylecastError(f"{why}; install one (e.g. apt install g++) or train with --no-compile")
            train_model, criterion = torch.compile(model), torch.compile(criterion)
        if self.distributed:
            train_model = torch.nn.parallel.DistributedDataParallel(
                model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        dataset = StepBatches(files, cfg.batch, cfg.crop, cfg.seed, cfg.scale, self.rank, self.world)
        loader = DataLoader(dataset, batch_size=None, sampler=StepSampler(start, cfg.steps),
                            num_workers=cfg.workers, persistent_workers=False)
        if self.main:
            cfg.run_dir.mkdir(parents=True, exist_ok=True)
            self._truncate_log(log_path, start, cfg.init.with_suffix(".log.csv") if cfg.init and not resume else None)
            print(f"precision {cfg.precision} -> {self.precision} on {self.device}: {self.precision_choice.reason}",
                  flush=True)
        previous = signal.signal(signal.SIGINT, self._on_sigint)
        try:
            step = self._loop(train_model, model, criterion, optimizer, loader, start, log_path)
        finally:
            signal.signal(signal.SIGINT, previous)
        if self.main:
            save_state(state_path, model, optimizer, step, self._meta(step))
            plot_losses(log_path, cfg.run_dir / "loss.png", title=self.curve_title(), series=self.terms)
            if not self.interrupted:
                save_model(cfg.out, self._shipped(model), self._meta(step), cfg.model_weights)
                # The log and curve travel with the checkpoint (models/<style>.log.csv, .loss.png).
                shutil.copyfile(log_path, cfg.out.with_suffix(".log.csv"))
                shutil.copyfile(cfg.run_dir / "loss.png", cfg.out.with_suffix(".loss.png"))
        if self.distributed:
            dist.barrier()
        if self.interrupted:
            raise Interrupted(f"interrupted at step {step}; state saved to {state_path}, "
                                    "continue with --resume")
        return cfg.out

    def _loop(self, train_model, model, criterion, optimizer, loader, start: int, log_path: Path) -> int:  # noqa: ANN001
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        cfg = self.config
        step = start
        # A CPU budget, when set, is what ends the run (its step count is only an upper bound): the bar and its
        # time estimate then follow CPU-seconds against the budget.
        by_budget = bool(cfg.cpu_budget_s)
        done = TextColumn("step {task.fields[step]}  CPU {task.completed:.0f}/{task.total:.0f} s") if by_budget \
            else MofNCompleteColumn()
        columns = [TextColumn("[bold]train {task.fields[style]}"), BarColumn(), done,
                   TextColumn("{task.fields[losses]}"), TimeRemainingColumn()]
        with Progress(*columns, disable=not self.main) as bar:
            task = bar.add_task("train", total=cfg.cpu_budget_s if by_budget else cfg.steps,
                                completed=self.cpu_seconds if by_budget else start, style=cfg.style, losses="",
                                step=start)
            # fp16 needs loss scaling against gradient underflow; bf16 and fp32 do not.
            scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")
            tic, cpu_mark = time.perf_counter(), time.process_time()
            compiling = cfg.compile  # the first step of the sitting builds the kernels
            for images in loader:
                images = images.to(self.device, non_blocking=True)
                if cfg.channels_last:
                    images = images.contiguous(memory_format=torch.channels_last)
                for group in optimizer.param_groups:
                    group["lr"] = learning_rate(cfg.lr, cfg.lr_schedule, step, cfg.horizon)
                with autocast_for(self.device, self.precision):
                    losses = self._losses(train_model, criterion, images, step)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(losses["total"]).backward()
                scaler.step(optimizer)
                scaler.update()
                step += 1
                now = time.process_time()
                if compiling:
                    self.compile_cpu_seconds += now - cpu_mark
                    compiling = False
                else:
                    self.cpu_seconds += now - cpu_mark
                cpu_mark = now
                if self.main and (step % cfg.log_every == 0 or step == cfg.steps):
                    seconds = time.perf_counter() - tic
                    row = {k: float(v.detach()) for k, v in losses.items()}
                    row.update(step=step, seconds=round(seconds, 3), cpu_seconds=round(self.cpu_seconds, 1),
                               images_per_s=round(cfg.batch * self.world * cfg.log_every / max(seconds, 1e-9), 2))
                    self._append_log(log_path, row)
                    bar.update(task, losses=f"content {row['content']:.3g} style {row['style']:.3g}")
                    tic = time.perf_counter()
                bar.update(task, completed=self.cpu_seconds if by_budget else step, step=step)
                if self.main and step % cfg.checkpoint_every == 0:
                    save_state(cfg.run_dir / "state.safetensors", model, optimizer, step, self._meta(step))
                if self.main and cfg.snapshot_every and step % cfg.snapshot_every == 0:
                    save_model(snapshot_path(cfg.run_dir, step), self._shipped(model), self._meta(step),
                               cfg.model_weights)
                if self.interrupted or (cfg.cpu_budget_s and self.cpu_seconds >= cfg.cpu_budget_s):
                    break
        return step

    def _losses(self, train_model, criterion, images: torch.Tensor, step: int) -> dict[str, torch.Tensor]:  # noqa: ANN001
        """The criterion's terms for one batch; with the stability term, the noisy copies go through the net in
        the same batch (InstanceNorm keeps the images independent)."""
        cfg = self.config
        if not cfg.stability_weight:
            return self._score(criterion, self._stylize(train_model, images, step), images, step)
        noise = step_noise(images, cfg.stability_sigma, cfg.seed, step, cfg.stability_noise)
        noise = noise.to(images.device)
        clean, noisy = self._stylize(train_model, torch.cat([images, (images + noise).clamp(0, 255)]), step).chunk(2)
        losses = self._score(criterion, clean, images, step)
        losses["stability"] = cfg.stability_weight * noise_stability(clean, noisy, cfg.stability_loss)
        losses["total"] = losses["total"] + losses["stability"]
        return losses

    def _stylize(self, train_model, images: torch.Tensor, step: int) -> torch.Tensor:  # noqa: ANN001
        """The net's output for training step ``step`` (a multi-style run feeds that step's style)."""
        return train_model(images)

    def _score(self, criterion: torch.nn.Module, output: torch.Tensor, images: torch.Tensor,
               step: int) -> dict[str, torch.Tensor]:
        """The criterion's terms for step ``step`` (a multi-style run scores under that step's style)."""
        return criterion(output, images)

    def _truncate_log(self, path: Path, start: int, earlier: Path | None = None) -> None:
        """Start the log with the rows up to ``start``: on resume this run's own (rows logged after the
        checkpoint dropped, so no step is there twice), on ``--init`` the init model's ``.log.csv`` where it
        has one, so a fine-tuned model's log and curve cover every sitting."""
        source = earlier or path
        rows = []
        if source.is_file() and start > 0:
            try:
                with open(source, newline="") as handle:
                    rows = [r for r in csv.DictReader(handle) if int(r["step"]) <= start]
            except (KeyError, TypeError, ValueError) as exc:
                raise StylecastError(f"{source}: not a stylecast training log ({exc!r}); move it aside and run "
                                     "again") from exc
        with open(path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, self.log_fields, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)

    def _append_log(self, path: Path, row: dict) -> None:
        with open(path, "a", newline="") as handle:
            csv.DictWriter(handle, self.log_fields, extrasaction="ignore").writerow(row)
