"""Prometheus metrics of one server, in its own registry (so each app, e.g. in a test, counts alone), and the
per-model statistics of Triton's statistics extension (``GET /v2/models/stats``) that perf_analyzer and
model_analyzer read."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64)


@dataclass
class Duration:
    """Triton's ``$duration_stat``: how many times something happened, and its nanoseconds in all."""

    count: int = 0
    ns: int = 0

    def add(self, ns: int) -> None:
        self.count += 1
        self.ns += max(0, ns)

    def json(self) -> dict[str, int]:
        return {"count": self.count, "ns": self.ns}


@dataclass
class RequestTiming:
    """What a handler measures of one request: decoding its input and encoding its answer."""

    input_ns: int = 0
    output_ns: int = 0

    @contextmanager
    def input(self) -> Iterator[None]:
        started = time.perf_counter_ns()
        yield
        self.input_ns += time.perf_counter_ns() - started

    @contextmanager
    def output(self) -> Iterator[None]:
        started = time.perf_counter_ns()
        yield
        self.output_ns += time.perf_counter_ns() - started


@dataclass
class _ModelCounts:
    last_inference_ms: int = 0
    inference_count: int = 0  # images inferred successfully
    execution_count: int = 0  # batches run successfully
    success: Duration = field(default_factory=Duration)
    fail: Duration = field(default_factory=Duration)
    queue: Duration = field(default_factory=Duration)
    compute_input: Duration = field(default_factory=Duration)
    compute_infer: Duration = field(default_factory=Duration)
    compute_output: Duration = field(default_factory=Duration)
    batches: dict[int, Duration] = field(default_factory=dict)  # inference time by batch size (images)


def _ns(seconds: float) -> int:
    return round(seconds * 1e9)


class ModelStats:
    """Counts since the server started, by model, as Triton keeps them: requests (success, fail, their time
    decoding input and encoding output) from the handlers, queue and inference time of every request and every
    batch from the batcher. Used only on the event loop's thread, so it needs no lock."""

    def __init__(self) -> None:
        self._models: dict[str, _ModelCounts] = {}

    def _counts(self, model: str) -> _ModelCounts:
        return self._models.setdefault(model, _ModelCounts())

    @contextmanager
    def request(self, model: str) -> Iterator[RequestTiming]:
        """Around a request routed to ``model``: any exception (a 4xx, a 503, a 500, the client leaving) is a
        fail, else a success with the handler's input and output times."""
        started, timing = time.perf_counter(), RequestTiming()
        counts = self._counts(model)
        try:
            yield timing
        except BaseException:
            counts.fail.add(_ns(time.perf_counter() - started))
            raise
        counts.success.add(_ns(time.perf_counter() - started))
        counts.compute_input.add(timing.input_ns)
        counts.compute_output.add(timing.output_ns)

    def executed(self, model: str, jobs: list[tuple[float, float, int]], finished: float, ok: bool) -> None:
        """A batch of ``model`` ran until ``finished``: (arrived, started, images) of each request in it, on the
        batcher's monotonic clock. Each request's inference time is its batch's, as Triton counts it."""
        counts = self._counts(model)
        for arrived, started, _ in jobs:
            counts.queue.add(_ns(started - arrived))
            counts.compute_infer.add(_ns(finished - started))
        if ok and jobs:
            images = sum(size for _, _, size in jobs)
            counts.inference_count += images
            counts.execution_count += 1
            counts.batches.setdefault(images, Duration()).add(_ns(finished - jobs[0][1]))
            counts.last_inference_ms = int(time.time() * 1000)

    def report(self, models: list[str], version: str) -> dict:
        """Triton's ``$stats_model_response`` for ``models``."""
        return {"model_stats": [self._model_report(name, version) for name in models]}

    def _model_report(self, name: str, version: str) -> dict:
        counts = self._models.get(name, _ModelCounts())
        # No response cache, and input and output are prepared per request (compute_input and compute_output
        # above), not per batch: those counts are honestly zero.
        none = Duration().json()
        return {
            "name": name, "version": version, "last_inference": counts.last_inference_ms,
            "inference_count": counts.inference_count, "execution_count": counts.execution_count,
            "inference_stats": {
                "success": counts.success.json(), "fail": counts.fail.json(), "queue": counts.queue.json(),
                "compute_input": counts.compute_input.json(), "compute_infer": counts.compute_infer.json(),
                "compute_output": counts.compute_output.json(), "cache_hit": none},
            "batch_stats": [{"batch_size": size, "compute_input": none, "compute_infer": infer.json(),
                             "compute_output": none} for size, infer in sorted(counts.batches.items())],
        }


class Metrics:
    """Requests by route and code, latency, queue depth, batch sizes and inference time; Triton's statistics."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("stylecast_requests", "HTTP requests answered, by route template and status code",
                                ["route", "code"], registry=self.registry)
        self.latency = Histogram("stylecast_request_seconds", "Time from request to response, by route template",
                                 ["route"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.queue_depth = Gauge("stylecast_queue_depth", "Images waiting for inference (not yet running)",
                                 registry=self.registry)
        self.pixels_in_flight = Gauge("stylecast_pixels_in_flight", "Pixels held by admitted requests, from the "
                                      "decoded upload to the encoded answer", registry=self.registry)
        self.batch_size = Histogram("stylecast_batch_size", "Images per inference call", buckets=BATCH_BUCKETS,
                                    registry=self.registry)
        self.inference = Histogram("stylecast_inference_seconds", "Time of one inference call (a whole batch)",
                                   ["model"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.stats = ModelStats()

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
