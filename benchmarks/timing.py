"""Interleaved timing: warm-up by count and time, then round-robin rounds across all formats.

Timing one format after another lets drift (thermal state, a neighbour's load, frequency
scaling) land on whichever format ran during it. Round-robin spreads it over all of them, and
rotating the order each round keeps any one format from always running after a particular other.

What is timed is the runtime's own ``Backend`` (PyTorch too, behind the same interface), one call at a time:
everything a caller pays per image (layout and dtype conversions, copies) is inside the timing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from stylecast.runtime.backends import Backend
from stylecast.runtime.timing import elapsed_ms


@dataclass
class Sample:
    """One timed call. Device engines add their three stages (their own clock); on the host only the total exists."""

    total_ms: float
    h2d_ms: float | None = None
    compute_ms: float | None = None
    d2h_ms: float | None = None


def timed_call(backend: Backend, batch: np.ndarray) -> tuple[np.ndarray, Sample]:
    """One ``run_staged`` call on the host clock, with the stages the backend timed apart."""
    start = time.perf_counter_ns()
    out, stages = backend.run_staged(batch)
    total = elapsed_ms(start)
    if stages is None:
        return out, Sample(total)
    return out, Sample(total, stages.h2d_ms, stages.compute_ms, stages.d2h_ms)


@dataclass(frozen=True)
class Policy:
    warmup_calls: int  # at least this many untimed calls...
    warmup_s: float  # ...and at least this long, whichever ends later
    min_rounds: int
    max_rounds: int
    budget_s: float  # timed rounds of one cell (all formats together), beyond min_rounds


FULL = Policy(warmup_calls=3, warmup_s=2.0, min_rounds=5, max_rounds=40, budget_s=60.0)
QUICK = Policy(warmup_calls=2, warmup_s=0.5, min_rounds=7, max_rounds=15, budget_s=20.0)


@dataclass
class Timed:
    """What one backend measured in one cell."""

    samples: list[Sample] = field(default_factory=list)
    first_call_s: float | None = None
    warmup_calls: int = 0
    error: str | None = None


def describe_error(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def warm_up(backend: Backend, batch: np.ndarray, policy: Policy, timed: Timed) -> float:
    """Untimed calls until both the count and the time are met; returns the typical call in seconds."""
    durations = []
    start = time.perf_counter()
    while len(durations) < max(policy.warmup_calls, 1) or time.perf_counter() - start < policy.warmup_s:
        _, sample = timed_call(backend, batch)
        durations.append(sample.total_ms / 1e3)
    timed.first_call_s, timed.warmup_calls = durations[0], len(durations)
    return float(np.median(durations[1:] or durations))


def plan_rounds(per_call_s: list[float], policy: Policy) -> int:
    one_round = max(sum(per_call_s), 1e-6)
    return int(min(max(policy.budget_s // one_round, policy.min_rounds), policy.max_rounds))


def run_cell(backends: dict[str, Backend], inputs: list[np.ndarray], policy: Policy,
             on_output: Callable[[int, str, np.ndarray], None],
             progress: Callable[[str, int, int], None] = lambda *_: None) -> dict[str, Timed]:
    """Warm up each backend (keyed by its row), then interleave timed rounds; input ``i % len(inputs)`` in round ``i``.

    ``on_output(photo, key, output)`` sees each backend's first output per input (parity).
    A backend that raises is dropped from the cell with its error; the others go on.
    """
    results = {key: Timed() for key in backends}
    live, estimates = [], []
    for key, backend in backends.items():
        progress(f"warm-up {key}", 0, 0)
        try:
            estimates.append(warm_up(backend, inputs[0], policy, results[key]))
            live.append(key)
        except Exception as exc:  # any engine failure becomes that row's status, never the run's end
            results[key].error = describe_error(exc)
    rounds = plan_rounds(estimates, policy)
    for index in range(rounds):
        photo = index % len(inputs)
        shift = index % max(len(live), 1)
        for key in live[shift:] + live[:shift]:
            timed = results[key]
            if timed.error:
                continue
            try:
                out, sample = timed_call(backends[key], inputs[photo])
                if out.shape != inputs[photo].shape:
                    raise ValueError(f"output shape {out.shape} differs from the input's {inputs[photo].shape}")
            except Exception as exc:  # as above: recorded, and the round goes on without it
                timed.error = describe_error(exc)
                continue
            timed.samples.append(sample)
            if index < len(inputs):
                on_output(photo, key, out)
        progress(f"round {index + 1}/{rounds}", index + 1, rounds)
    return results


def paired_speedup(baseline: list[float], other: list[float]) -> float:
    """Median over rounds of baseline time / this format's time in the same round.

    Both ran seconds apart, so load that comes and goes (other jobs, frequency changes) divides
    out round by round; a ratio of two medians would still carry it.
    """
    return float(np.median([b / o for b, o in zip(baseline, other, strict=False)]))


def summarise(values: list[float]) -> dict[str, float]:
    """Median and spread of one series of milliseconds (``n`` is the sample count)."""
    a = np.asarray(values, dtype=np.float64)
    p10, p25, p50, p75, p90 = (float(v) for v in np.percentile(a, [10, 25, 50, 75, 90]))
    return {"p50": p50, "p90": p90, "p10": p10, "iqr": p75 - p25, "mean": float(a.mean()), "std": float(a.std()),
            "min": float(a.min()), "max": float(a.max()), "n": len(a)}
