"""A bounded asyncio load client: a fixed number of requests, at most ``concurrency`` in flight, each with a
timeout, so a run always ends. It counts every answer by status code and checks the count against the
server's own /metrics."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx
import numpy as np
from prometheus_client.parser import text_string_to_metric_families


@dataclass
class Burst:
    codes: Counter = field(default_factory=Counter)  # status code -> answers ("error" for no answer at all)
    latencies: list[float] = field(default_factory=list)  # seconds, of the 200s
    seconds: float = 0.0
    retry_after: set[str] = field(default_factory=set)  # the Retry-After values the 503s carried

    @property
    def throughput(self) -> float:
        return self.codes[200] / self.seconds if self.seconds else 0.0

    def percentile_ms(self, q: float) -> float | None:
        return float(np.percentile(self.latencies, q) * 1000) if self.latencies else None


async def burst(url: str, body: bytes, requests: int, concurrency: int, params: dict | None = None,
                headers: dict | None = None, timeout: float = 120.0) -> Burst:
    """POST ``body`` to ``url`` ``requests`` times, ``concurrency`` at a time."""
    result = Burst()
    todo = iter(range(requests))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def worker(client: httpx.AsyncClient) -> None:
        for _ in todo:
            started = time.perf_counter()
            try:
                answer = await client.post(url, content=body, params=params, headers=headers)
            except httpx.HTTPError:
                result.codes["error"] += 1
                continue
            result.codes[answer.status_code] += 1
            if answer.status_code == 200:
                result.latencies.append(time.perf_counter() - started)
            elif answer.status_code == 503:
                result.retry_after.add(answer.headers.get("retry-after", ""))

    async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        result.seconds = time.perf_counter() - started
    return result


def request_counts(metrics_text: str, route: str) -> Counter:
    """The server's count of answers on ``route`` by status code, from its Prometheus exposition."""
    counts: Counter = Counter()
    for family in text_string_to_metric_families(metrics_text):
        if family.name != "stylecast_requests":
            continue
        for sample in family.samples:
            if sample.name.endswith("_total") and sample.labels.get("route") == route:
                counts[int(sample.labels["code"])] += int(sample.value)
    return counts


def scrape(base_url: str, headers: dict | None = None) -> str:
    return httpx.get(f"{base_url}/metrics", headers=headers, timeout=30).text
