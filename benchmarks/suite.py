"""The benchmark: every variant x resolution, all of its formats timed together, one row each."""

from __future__ import annotations

import gc
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from stylecast.benchmarks import discover, machine, openvino_runner
from stylecast.benchmarks.openvino_runner import OpenVinoRunner
from stylecast.benchmarks.ort_runner import OrtRunner, providers, short_name
from stylecast.benchmarks.runner import Runner
from stylecast.benchmarks.scoring import ParityCollector
from stylecast.benchmarks.timing import FULL, Policy, Timed, describe_error, run_cell, summarise
from stylecast.benchmarks.torch_runner import BASELINE, MODES, TorchRunner, unavailable
from stylecast.benchmarks.trt_runner import TensorRTRunner, why_unavailable
from stylecast.compress.prune import gflops as count_gflops
from stylecast.export.parity import parity_images
from stylecast.runtime.artifacts import FORMAT_KEY, sha256_file
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
    threads: int = 1
    policy: Policy = FULL
    torch_modes: list[str] = field(default_factory=lambda: [BASELINE])
    skip_modes: dict[str, str] = field(default_factory=dict)  # mode -> why it is left out (e.g. --quick)
    providers: list[str] | None = None  # None: every available ONNX Runtime provider
    peak_seconds: float = 1.5


@dataclass
class Planned:
    """A row before timing: its runner, or the reason it has none."""

    fmt: str
    precision: str
    engine: str
    runner: Runner | None = None
    status: str = "ok"
    path: Path | None = None


@dataclass
class Variant:
    name: str
    checkpoint: Path
    model: torch.nn.Module
    meta: dict[str, str]
    sha256: str
    plans: list[Planned] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)


def _torch_plans(variant: Variant, config: BenchConfig) -> list[Planned]:
    """The eager fp32 baseline first, then each optimised mode; the checkpoint is their file."""
    plans = []
    for name in [BASELINE, *[m for m in config.torch_modes if m != BASELINE]]:
        mode = MODES[name]
        reason = unavailable(mode, config.device)
        runner = None if reason else TorchRunner(variant.model, mode, config.device)
        plans.append(Planned("PyTorch", mode.precision, name, runner, reason or "ok", variant.checkpoint))
    plans += [Planned("PyTorch", MODES[name].precision, name, status=why, path=variant.checkpoint)
              for name, why in config.skip_modes.items()]
    return plans


def _export_plans(variant: Variant, config: BenchConfig) -> list[Planned]:
    artifacts, variant.foreign = discover.artifacts_for(variant.checkpoint, config.artifacts)
    chosen = config.providers or providers()
    trt_reason, ov_reason = why_unavailable(), openvino_runner.why_unavailable()
    bf16_reason = None if ov_reason else openvino_runner.why_no_bf16()  # asked once, not per file
    plans = []
    for item in artifacts:
        if item.kind == "onnx":
            for provider in chosen:
                runner = OrtRunner(item.path, item.precision, provider, config.threads) if item.status == "ok" else None
                plans.append(Planned("ONNX Runtime", item.precision, short_name(provider), runner, item.status, item.path))
            if not ov_reason:
                runner = OpenVinoRunner(item.path, item.precision, config.threads) if item.status == "ok" else None
                plans.append(Planned("OpenVINO", item.precision, openvino_runner.DEVICE, runner, item.status, item.path))
            if not ov_reason and item.precision in ("fp32", "int8"):  # the same file, its float ops in bf16
                status = bf16_reason or item.status
                runner = OpenVinoRunner(item.path, item.precision, config.threads, bf16=True)
                plans.append(Planned("OpenVINO", runner.precision, runner.engine, runner if status == "ok" else None,
                                     status, item.path))
        elif not trt_reason:
            runner = TensorRTRunner(item.path, item.precision) if item.status == "ok" else None
            plans.append(Planned("TensorRT", item.precision, "engine", runner, item.status, item.path))
    if not any(a.kind == "onnx" for a in artifacts):
        plans.append(Planned("ONNX Runtime", "fp32", "-", status=f"skipped: no ONNX export of {variant.checkpoint} "
                             f"in {config.artifacts}/*/; run `stylecast export {variant.checkpoint}`"))
    if ov_reason:
        plans.append(Planned("OpenVINO", "-", openvino_runner.DEVICE, status=ov_reason))
    if trt_reason or not any(a.kind == discover.ENGINE_FORMAT for a in artifacts):
        missing = f"skipped: no TensorRT engine of {variant.checkpoint} in {config.artifacts}/*/"
        plans.append(Planned("TensorRT", "-", "engine", status=trt_reason or missing))
    return plans


def load_variants(config: BenchConfig) -> list[Variant]:
    variants = []
    for path in discover.checkpoints(config.models):
        loaded = load_model(path)
        variant = Variant(path.stem, path, loaded.model, loaded.meta, sha256_file(path))
        variant.plans = _torch_plans(variant, config) + _export_plans(variant, config)
        variants.append(variant)
    return variants


def _load_runners(plans: list[Planned]) -> None:
    """Open sessions and engines for one cell; a failure there becomes the row's status from then on."""
    for plan in plans:
        if plan.runner is None:
            continue
        try:
            plan.runner.load()
        except Exception as exc:  # a broken file or engine is that row's problem only
            plan.status, plan.runner = f"error: {describe_error(exc)}", None


def _close_runners(plans: list[Planned]) -> None:
    """Free every session, engine and compiled graph of a cell: the runtime's ONNX Runtime sessions keep their
    memory arena (as users get them), so the next cell starts with that memory back."""
    for plan in plans:
        if plan.runner is not None:
            plan.runner.close()
    torch._dynamo.reset()  # compiled graphs of every resolution
    gc.collect()


def paired_speedup(baseline: list[float], other: list[float]) -> float:
    """Median over rounds of baseline time / this format's time in the same round.

    Both ran seconds apart, so load that comes and goes (other jobs, frequency changes) divides
    out round by round; a ratio of two medians would still carry it.
    """
    return float(np.median([b / o for b, o in zip(baseline, other, strict=False)]))


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
        "load_s": round(plan.runner.load_s, 3) if plan.runner else None,
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
    active = [p for p in variant.plans if p.runner is not None and p.status == "ok"]
    reference = next((p.runner.key for p in active if p.engine == BASELINE), None)
    collector = ParityCollector(reference or "")
    timings = run_cell([p.runner for p in active], inputs, config.policy,
                       lambda photo, runner, out: collector.add(photo, runner.key, out), progress)
    base = timings.get(reference) if reference else None
    baseline = [s.total_ms for s in base.samples] if base and base.samples and not base.error else None
    gflops = count_gflops(variant.model, resolution.height, resolution.width)
    rows = []
    for plan in variant.plans:
        timed = timings.get(plan.runner.key) if plan.runner else None
        parity = collector.summary(plan.runner.key) if plan.runner and reference else {}
        rows.append(_row(variant, resolution, plan, timed, parity, gflops, baseline, peaks))
    return rows


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
            _load_runners(variant.plans)
            rows += bench_cell(variant, resolution, photos, config, peaks, progress)
            _close_runners(variant.plans)
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
            "onnxruntime": "the runtime's sessions (memory arena on), intra_op_num_threads = threads, thread spinning "
                           "off; opened per model and resolution, freed before the next",
            "openvino": "the runtime's backend: compiled per input shape, PERFORMANCE_HINT LATENCY, "
                        "INFERENCE_NUM_THREADS = threads, INFERENCE_PRECISION_HINT f32 (engine 'CPU bf16': bf16)",
            "quoted": "speedup = median of same-round ratios; min ms and speedup of the minima shown beside it",
            "baseline": f"PyTorch {BASELINE} fp32",
        },
        "variants": [{"name": v.name, "checkpoint": str(v.checkpoint), "sha256": v.sha256, "style": v.meta.get("style"),
                      "arch": json.loads(v.meta.get("arch", "{}")), "params": count_parameters(v.model),
                      "teacher": v.meta.get("teacher")}
                     for v in variants],
        "not_matched": sorted({f for v in variants for f in v.foreign} - {r["file"] for r in rows if r["file"]}),
        "rows": rows,
    }
