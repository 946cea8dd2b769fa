"""What the load clients share: the requests they repeat (a JPEG to /v1/stylize, a binary v2 infer), the tally of
one run (answers by status code, latencies of the 200s), and the server's own count from /metrics to check it by.
Also a bounded asyncio client (a fixed number of requests, at most ``concurrency`` in flight, each with a timeout)
for the overload tests."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import tritonclient.http as triton_http
from prometheus_client.parser import text_string_to_metric_families

from stylecast.runtime.formats import INPUT, OUTPUT, triton_model_name
from stylecast.runtime.images import encode_image

# The binary tensor extension's header (the protocol's name; the server's own constant is a layer away).
HEADER_LENGTH = "Inference-Header-Content-Length"


@dataclass(frozen=True)
class Call:
    """One request a load test repeats, and the route template the server's /metrics counts it under."""

    label: str
    path: str
    body: bytes
    headers: dict[str, str]
    route: str


def stylize_call(image: bytes) -> Call:
    """POST an encoded image to /v1/stylize, as the page and `curl --data-binary` do."""
    return Call("v1", "/v1/stylize", image, {}, "/v1/stylize")


def infer_call(model: str, batch: np.ndarray) -> Call:
    """A v2 infer with binary input and output tensors, the body built by Triton's own client as its users send it."""
    tensor = triton_http.InferInput(INPUT, list(batch.shape), "FP32")
    tensor.set_data_from_numpy(batch.astype(np.float32), binary_data=True)
    body, header = triton_http.InferenceServerClient.generate_request_body(
        [tensor], outputs=[triton_http.InferRequestedOutput(OUTPUT, binary_data=True)])
    return Call("v2", f"/v2/models/{model}/infer", body,
                {HEADER_LENGTH: str(header), "Content-Type": "application/octet-stream"}, "/v2/models/{name}/infer")


def tensor(rgb: np.ndarray) -> np.ndarray:
    """An HxWx3 uint8 image as the models take it: a batch of one, float32 NCHW in [0, 255]."""
    return rgb.transpose(2, 0, 1)[None].astype(np.float32)


def calls(model: Path, rgb: np.ndarray) -> dict[str, Call]:
    """Both routes' request for ``model`` and one HxWx3 uint8 image: ``v1`` its JPEG, ``v2`` its tensor."""
    return {"v1": stylize_call(encode_image(rgb, None, "JPEG")), "v2": infer_call(triton_model_name(model), tensor(rgb))}


@dataclass
class Burst:
    codes: Counter = field(default_factory=Counter)  # status code -> answers ("error ..." for no answer at all)
    latencies: list[float] = field(default_factory=list)  # seconds, of the 200s
    seconds: float = 0.0
    retry_after: set[str] = field(default_factory=set)  # the Retry-After values the 503s carried

    @property
    def throughput(self) -> float:
        return self.codes[200] / self.seconds if self.seconds else 0.0

    def percentile_ms(self, q: float) -> float | None:
        return float(np.percentile(self.latencies, q) * 1000) if self.latencies else None

    def record(self, code: int | str, seconds: float, retry_after: str | None) -> None:
        """One answer (``"error"``: none at all): its code; its latency if a 200; what a 503 said to wait."""
        self.codes[code] += 1
        if code == 200:
            self.latencies.append(seconds)
        elif code == 503:
            self.retry_after.add(retry_after or "")


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
                result.record("error", 0.0, None)
                continue
            result.record(answer.status_code, time.perf_counter() - started, answer.headers.get("retry-after"))

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
    """The server's Prometheus exposition."""
    return httpx.get(f"{base_url}/metrics", headers=headers, timeout=30).text
