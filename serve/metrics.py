"""Prometheus metrics of one server, in its own registry (so each app, e.g. in a test, counts alone)."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64)


class Metrics:
    """Requests by route and code, latency, queue depth, batch sizes and inference time."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("stylecast_requests", "HTTP requests answered, by route template and status code",
                                ["route", "code"], registry=self.registry)
        self.latency = Histogram("stylecast_request_seconds", "Time from request to response, by route template",
                                 ["route"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.queue_depth = Gauge("stylecast_queue_depth", "Images waiting for inference (not yet running)",
                                 registry=self.registry)
        self.batch_size = Histogram("stylecast_batch_size", "Images per inference call", buckets=BATCH_BUCKETS,
                                    registry=self.registry)
        self.inference = Histogram("stylecast_inference_seconds", "Time of one inference call (a whole batch)",
                                   ["model"], buckets=LATENCY_BUCKETS, registry=self.registry)

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
