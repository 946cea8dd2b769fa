"""The one wall-clock timer: every latency stylecast reports (bench rounds, export and compression
latencies, evaluation, video batches, the precision probe) is taken with these, so they agree on
the clock (``perf_counter_ns``) and on what a warm-up is."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def elapsed_ms(start_ns: int) -> float:
    """Milliseconds since ``start_ns`` (a ``time.perf_counter_ns()`` reading)."""
    return (time.perf_counter_ns() - start_ns) / 1e6


def timed_ms(call: Callable[[], T]) -> tuple[T, float]:
    """``call()``'s result and how long it took."""
    start = time.perf_counter_ns()
    result = call()
    return result, elapsed_ms(start)


def median_ms(call: Callable[[], object], warmup: int = 2, repeats: int = 5) -> float:
    """Median of ``repeats`` timed calls after ``warmup`` untimed ones; the median shrugs off a busy neighbour."""
    for _ in range(warmup):
        call()
    return statistics.median(timed_ms(call)[1] for _ in range(repeats))
