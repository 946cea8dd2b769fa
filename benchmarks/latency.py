"""Time a few ONNX files on every backend of the format table that runs them, against a teacher's PyTorch eager
fp32, in one interleaved cell: the studies' shared measurement (the bench's timing, without its table).

Each backend contributes its host-CPU variant at the file's own precision (engine ``CPU``), opened with the
bench's settings (the given threads, no idle-thread spinning). Results are keyed ``model/format/precision/engine``,
as the bench's rows are named, with the teacher under ``teacher/PyTorch/fp32/eager``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np

from stylecast.benchmarks.suite import Resolution
from stylecast.benchmarks.timing import Policy, describe_error, paired_speedup, run_cell
from stylecast.benchmarks.torch_backend import BASELINE, LABEL, TorchBackend
from stylecast.runtime.backends import Backend, backend_class
from stylecast.runtime.formats import BACKENDS, FILE_KINDS, ONNX, BackendOptions
from stylecast.runtime.images import fit
from stylecast.train.checkpoint import LoadedModel

POLICY = Policy(warmup_calls=2, warmup_s=0.5, min_rounds=3, max_rounds=7, budget_s=60.0)
HOST = "CPU"  # the variant every ONNX backend names for the host CPU at the file's own precision
TEACHER = "teacher"
TEACHER_KEY = f"{TEACHER}/{LABEL}/fp32/{BASELINE}"


def onnx_labels() -> tuple[str, ...]:
    """The format column of each backend that runs ONNX files, the default first."""
    return tuple(BACKENDS[name].label for name in FILE_KINDS[ONNX].backends)


def key(model: str, label: str, precision: str, engine: str = HOST) -> str:
    return f"{model}/{label}/{precision}/{engine}"


def host_rows(model: str, path: Path, precision: str, threads: int) -> dict[str, Callable[[], Backend] | str]:
    """Per ONNX backend: how to open ``path`` on the host CPU, or why it cannot be."""
    options = BackendOptions(threads=threads, spin=False)
    rows: dict[str, Callable[[], Backend] | str] = {}
    for name in FILE_KINDS[ONNX].backends:
        cls, row = backend_class(name), key(model, BACKENDS[name].label, precision)
        reason = cls.unavailable()
        if reason is None:
            host = [v for v in cls.variants(path, precision, options) if v.engine == HOST and v.precision == precision]
            reason = host[0].status if host else f"skipped: {BACKENDS[name].label} offers no {HOST} row here"
            if reason is None:
                rows[row] = partial(cls.open, path, host[0].options)
                continue
        rows[row] = reason
    return rows


def measure(teacher: LoadedModel, files: dict[str, Path], resolution: Resolution, photo: np.ndarray, threads: int,
            precision: str = "int8", policy: Policy = POLICY) -> dict[str, dict]:
    """One interleaved cell: the teacher's eager fp32 and each file on every ONNX backend; per key the median and
    fastest ms and the paired speedup over the teacher (or the error)."""
    planned: dict[str, Callable[[], Backend] | str] = {
        TEACHER_KEY: partial(TorchBackend, teacher.path, teacher.model, teacher.meta)}
    for model, path in files.items():
        planned.update(host_rows(model, path, precision, threads))
    out: dict[str, dict] = {row: {"error": why} for row, why in planned.items() if isinstance(why, str)}
    batch = fit(photo, resolution.height, resolution.width).transpose(2, 0, 1)[None].astype(np.float32)
    with contextlib.ExitStack() as stack:
        backends = {}
        for row, opener in planned.items():
            if isinstance(opener, str):
                continue
            try:
                backends[row] = stack.enter_context(opener())
            except Exception as exc:  # one file or engine that cannot open is its row's problem only
                out[row] = {"error": describe_error(exc)}
        timings = run_cell(backends, [batch], policy, lambda *_: None)
    base = [s.total_ms for s in timings[TEACHER_KEY].samples] if TEACHER_KEY in timings else []
    for row, timed in timings.items():
        own = [s.total_ms for s in timed.samples]
        out[row] = ({"error": timed.error or "no samples"} if timed.error or not own or not base else
                    {"p50_ms": float(np.median(own)), "min_ms": min(own), "speedup": paired_speedup(base, own)})
    return out
