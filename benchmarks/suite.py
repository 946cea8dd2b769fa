"""The benchmark: every variant x resolution, all of its formats timed together, one row each.

The rows come from the format table: for each exported file of a checkpoint, each backend that runs its file kind
(``FILE_KINDS[kind].backends``) says whether it can run here (``unavailable``) and which rows it offers for the
file (``variants``: an execution provider, an inference precision). PyTorch, the baseline, is one more backend
behind the same interface (``torch_backend``). Backends are opened per model and resolution and closed after it.
"""

from __future__ import annotations

import contextlib
import gc
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path

import numpy as np
import torch

from stylecast.benchmarks import discover, machine
from stylecast.benchmarks.scoring import ParityCollector
from stylecast.benchmarks.timing import FULL, Policy, Timed, describe_error, paired_speedup, run_cell, summarise
from stylecast.benchmarks.torch_backend import BASELINE, LABEL, MODES, TorchBackend, unavailable
from stylecast.compress.prune import gflops as count_gflops
from stylecast.export.parity import parity_images
from stylecast.runtime.artifacts import FORMAT_KEY, sha256_file
from stylecast.runtime.backends import Backend, backend_class
from stylecast.runtime.errors import StylecastError
from stylecast.runtime.formats import BACKENDS, FILE_KINDS, BackendOptions
from stylecast.runtime.images import fit
from stylecast.runtime.options import parse_size
from stylecast.train.checkpoint import load_model
from stylecast.train.model import count_parameters

RESULT_FORMAT = "bench"


@dataclass(frozen=True)
class Resolution:
    height: int
    width: int

    @property
    def label(self) -> str:
        return f"{self.width}x{self.height}"

    @classmethod
    def parse(cls, text: str) -> Resolution:
        """``256`` (square), ``1080p``, or ``WIDTHxHEIGHT``."""
        size = parse_size(text, "--resolution")
        return cls(size.height, size.width)


@dataclass
class BenchConfig:
    models: list[Path]
    artifacts: Path = Path("artifacts")
    photos: Path = Path("benchmarks/photos")
    resolutions: list[Resolution] = field(default_factory=lambda: [Resolution(256, 256)])
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    threads: int = 1  # every engine's and PyTorch's: it overrides ``options.threads``
    policy: Policy = FULL
    torch_modes: list[str] = field(default_factory=lambda: [BASELINE])
    skip_modes: dict[str, str] = field(default_factory=dict)  # mode -> why it is left out (e.g. --quick)
    # The shared backend options: ``backend`` auto times every backend of the table, a name only that one;
    # ``provider`` narrows a backend's variants (the execution providers it offers).
    options: BackendOptions = field(default_factory=BackendOptions)
    peak_seconds: float = 1.5

    def backend_options(self) -> BackendOptions:
        """The options every backend is opened with: the bench's threads, and no idle-thread spinning, so one
        format's idle threads do not steal the cores from the next format in the round."""
        return replace(self.options, threads=self.threads, spin=False)


@dataclass
class Planned:
    """A row before timing: how to open its backend, or the reason it has none."""

    fmt: str
    precision: str
    engine: str
    opener: Callable[[], Backend] | None = None
    status: str = "ok"
    path: Path | None = None
    backend: Backend | None = None  # open during its cell only
    load_s: float | None = None

    @property
    def key(self) -> str:
        return "/".join((self.fmt, self.precision, self.engine))


@dataclass
class Variant:
    name: str
    checkpoint: Path
    model: torch.nn.Module
    meta: dict[str, str]
    sha256: str
    plans: list[Planned] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)


def selected_backends(options: BackendOptions) -> list[str]:
    """The table's backends that run some file kind (``--backend auto``), or the one named."""
    every = list(dict.fromkeys(name for kind in FILE_KINDS.values() for name in kind.backends))
    if options.backend == "auto":
        return every
    if options.backend not in BACKENDS:
        raise StylecastError(f"--backend {options.backend}: unknown; choose auto or one of: {', '.join(BACKENDS)}")
    return [options.backend]


def _torch_plans(variant: Variant, config: BenchConfig) -> list[Planned]:
    """The eager fp32 baseline first, then each optimised mode; the checkpoint is their file."""
    plans = []
    for name in [BASELINE, *[m for m in config.torch_modes if m != BASELINE]]:
        mode = MODES[name]
        reason = unavailable(mode, config.device)
        opener = None if reason else partial(TorchBackend, variant.checkpoint, variant.model, variant.meta, mode,
                                             config.device)
        plans.append(Planned(LABEL, mode.precision, name, opener, reason or "ok", variant.checkpoint))
    plans += [Planned(LABEL, MODES[name].precision, name, status=why, path=variant.checkpoint)
              for name, why in config.skip_modes.items()]
    return plans


def _idle_engine(cls: type[Backend], options: BackendOptions) -> str:
    """The engine column of a row that does not run: the backend's own name for it where it can give one without
    its engine installed, else "-"."""
    try:
        return cls.variants(Path(), "-", options)[0].engine
    except Exception:  # noqa: BLE001 - asking needs the engine itself: the row has no engine to name
        return "-"


def _export_plans(variant: Variant, config: BenchConfig, reasons: dict[str, str | None]) -> list[Planned]:
    """Each file x each backend of its kind x each variant the backend offers; then a row for each file kind that
    has no file of this checkpoint, and one for each backend that cannot run here."""
    artifacts, variant.foreign = discover.artifacts_for(variant.checkpoint, config.artifacts)
    options = config.backend_options()
    plans = []
    for item in artifacts:
        for name in FILE_KINDS[item.kind].backends:
            if name not in reasons or reasons[name]:
                continue
            cls, label = backend_class(name), BACKENDS[name].label
            try:
                rows = cls.variants(item.path, item.precision, options)
            except Exception as exc:  # a backend that cannot even list its rows is that file's problem only
                plans.append(Planned(label, item.precision, "-", status=f"error: {describe_error(exc)}",
                                     path=item.path))
                continue
            for row in rows:
                status = row.status or item.status
                opener = partial(cls.open, item.path, row.options) if status == "ok" else None
                plans.append(Planned(label, row.precision, row.engine, opener, status, item.path))
    reported = set()
    for kind in FILE_KINDS.values():
        names = [name for name in kind.backends if name in reasons]
        ready = [name for name in names if not reasons[name]]
        if ready and not any(a.kind == kind.name for a in artifacts):
            cls = backend_class(ready[0])
            plans.append(Planned(BACKENDS[ready[0]].label, "-", _idle_engine(cls, options),
                                 status=f"skipped: no {kind.name} file ({' '.join(kind.suffixes)}) of "
                                        f"{variant.checkpoint} in {config.artifacts}/*/; `stylecast export` writes "
                                        "ONNX files, `stylecast build-engine` engines"))
        for name in names:
            if reasons[name] and name not in reported:
                reported.add(name)
                plans.append(Planned(BACKENDS[name].label, "-", _idle_engine(backend_class(name), options),
                                     status=reasons[name]))
    return plans


def load_variants(config: BenchConfig) -> list[Variant]:
    reasons = {name: backend_class(name).unavailable() for name in selected_backends(config.options)}
    variants = []
    for path in discover.checkpoints(config.models):
        loaded = load_model(path)
        variant = Variant(path.stem, path, loaded.model, loaded.meta, sha256_file(path))
        variant.plans = _torch_plans(variant, config) + _export_plans(variant, config, reasons)
        variants.append(variant)
    return variants


def _open(plans: list[Planned], stack: contextlib.ExitStack) -> None:
    """Open the backends of one cell (closed when ``stack`` unwinds); a failure there becomes the row's status
    from then on."""
    for plan in plans:
        if plan.opener is None or plan.status != "ok":
            continue
        start = time.perf_counter()
        try:
            plan.backend = stack.enter_context(plan.opener())
        except Exception as exc:  # a broken file or engine is that row's problem only
            plan.status, plan.opener = f"error: {describe_error(exc)}", None
            continue
        plan.load_s = time.perf_counter() - start


def _release(plans: list[Planned]) -> None:
    """After a cell's backends closed (sessions, engines, compiled graphs and their memory arenas): drop them and
    the compiled graphs of every resolution, so the next cell starts with that memory back."""
    for plan in plans:
        plan.backend = None
    torch._dynamo.reset()
    gc.collect()


def _row(variant: Variant, resolution: Resolution, plan: Planned, timed: Timed | None, parity: dict,
         gflops: float, baseline: list[float] | None, peaks: dict) -> dict:
    row = {"variant": variant.name, "resolution": resolution.label, "format": plan.fmt, "precision": plan.precision,
           "engine": plan.engine, "file": str(plan.path) if plan.path else None,
           "bytes": plan.path.stat().st_size if plan.path else None,
           "params": count_parameters(variant.model), "gflops": round(gflops, 3), "status": plan.status}
    if timed is not None and timed.error:
        row["status"] = f"error: {timed.error}"
    if timed is None or row["status"] != "ok" or not timed.samples:
        return row
    own = [s.total_ms for s in timed.samples]
    total = summarise(own)
    row["samples"] = total.pop("n")
    row.update({f"{stat}_ms": round(value, 4) for stat, value in total.items()})
    for stage in ("h2d", "compute", "d2h"):
        values = [getattr(s, f"{stage}_ms") for s in timed.samples]
        if values[0] is not None:
            row[f"{stage}_p50_ms"] = round(summarise(values)["p50"], 4)
    peak_key = plan.precision if plan.precision in peaks and "gflops" in peaks[plan.precision] else "fp32"
    achieved = gflops / (total["p50"] / 1e3)
    row.update(parity)
    row.update({
        "images_per_s": round(1e3 / total["p50"], 3),
        "speedup": round(paired_speedup(baseline, own), 4) if baseline else None,
        # Eager PyTorch is the noisiest series: its best call against this format's best, shown beside the median.
        "speedup_min": round(min(baseline) / total["min"], 4) if baseline else None,
        "gflops_per_s": round(achieved, 2),
        "peak": peak_key,
        "peak_pct": round(100 * achieved / peaks[peak_key]["gflops"], 2) if "gflops" in peaks.get(peak_key, {}) else None,
        "load_s": round(plan.load_s, 3) if plan.load_s is not None else None,
        "first_call_s": round(timed.first_call_s, 3) if timed.first_call_s is not None else None,
        "warmup_calls": timed.warmup_calls,
        "samples_ms": [round(v, 3) for v in own],
    })
    return row


Progress = Callable[[str, int, int], None]


def bench_cell(variant: Variant, resolution: Resolution, photos: list[np.ndarray], config: BenchConfig,
               peaks: dict, progress: Progress) -> list[dict]:
    """All runnable formats of one variant at one resolution, interleaved; one row per plan."""
    inputs = [fit(p, resolution.height, resolution.width).transpose(2, 0, 1)[None].astype(np.float32) for p in photos]
    active = {p.key: p.backend for p in variant.plans if p.backend is not None and p.status == "ok"}
    reference = next((p.key for p in variant.plans if p.key in active and p.fmt == LABEL and p.engine == BASELINE),
                     None)
    collector = ParityCollector(reference or "")
    timings = run_cell(active, inputs, config.policy, collector.add, progress)
    base = timings.get(reference) if reference else None
    baseline = [s.total_ms for s in base.samples] if base and base.samples and not base.error else None
    gflops = count_gflops(variant.model, resolution.height, resolution.width)
    rows = []
    for plan in variant.plans:
        ran = plan.key in active
        parity = collector.summary(plan.key) if ran and reference else {}
        rows.append(_row(variant, resolution, plan, timings.get(plan.key) if ran else None, parity, gflops, baseline,
                         peaks))
    return rows


def _how_opened(name: str, config: BenchConfig) -> str:
    """The settings line of one backend of the table."""
    return (f"the runtime's {BACKENDS[name].label} backend as `stylecast stylize --backend {name}` opens it (its own "
            f"defaults), {config.threads} thread(s), idle-thread spinning off; one row per variant it offers for a file "
            "(an execution provider, an inference precision); opened per model and resolution, closed before the next")


def run(config: BenchConfig, progress: Progress = lambda *_: None, log: Callable[[str], None] = print) -> dict:
    """Measure everything; returns the JSON-ready result (machine, peaks, settings, rows)."""
    torch.set_num_threads(config.threads)
    photos = parity_images(config.photos)
    variants = load_variants(config)
    log(f"measuring the machine's matmul peak ({config.peak_seconds:.1f} s per precision)")
    peaks = machine.measure_peaks(config.device, config.peak_seconds, config.threads)
    rows = []
    for variant in variants:
        for resolution in config.resolutions:
            progress(f"{variant.name} {resolution.label}", 0, 0)
            try:
                with contextlib.ExitStack() as stack:
                    _open(variant.plans, stack)
                    rows += bench_cell(variant, resolution, photos, config, peaks, progress)
            finally:
                _release(variant.plans)
    return {
        FORMAT_KEY: RESULT_FORMAT,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine.describe(config.device, config.threads),
        "peaks_gflops": peaks,
        "settings": {
            "threads": config.threads, "device": str(config.device), "batch": 1,
            "resolutions": [r.label for r in config.resolutions], "photos": str(config.photos),
            "photo_count": len(photos), "policy": asdict(config.policy),
            "timer": "CUDA events (H2D/compute/D2H) + host wall clock" if config.device.type == "cuda"
            else "host wall clock (perf_counter_ns), conversions included",
            **{name: _how_opened(name, config) for name in selected_backends(config.options)},
            "quoted": "speedup = median of same-round ratios; min ms and speedup of the minima shown beside it",
            "baseline": f"{LABEL} {BASELINE} fp32",
        },
        "variants": [{"name": v.name, "checkpoint": str(v.checkpoint), "sha256": v.sha256, "style": v.meta.get("style"),
                      "arch": json.loads(v.meta.get("arch", "{}")), "params": count_parameters(v.model),
                      "teacher": v.meta.get("teacher")}
                     for v in variants],
        "not_matched": sorted({f for v in variants for f in v.foreign} - {r["file"] for r in rows if r["file"]}),
        "rows": rows,
    }
