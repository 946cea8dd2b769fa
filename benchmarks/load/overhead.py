"""What the server adds to one image: a round trip to `stylecast serve` at concurrency 1 against the same work done
in this process: for /v1/stylize the JPEG decoded, ``Stylizer(model)(rgb)`` and the answer encoded as the server
encodes it (a program stylizing JPEGs without a server does both too), and ``Stylizer.forward`` for a binary v2
infer (the model alone, as the server runs it).

The four calls take turns within each round, in an order that rotates every round, so a neighbour's load or a
frequency change lands on all of them alike; the ratio is the median of each round's server/direct ratio.
"""

from __future__ import annotations

import io
import statistics
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np

from stylecast.benchmarks.load.client import Call, calls, tensor
from stylecast.benchmarks.timing import paired_speedup
from stylecast.runtime.images import decode_image, encode_image
from stylecast.runtime.stylizer import Stylizer
from stylecast.runtime.timing import timed_ms

TARGET = 1.10  # the server may add at most a tenth to a 512² image at concurrency 1


def _round_trip(client: httpx.Client, call: Call) -> Callable[[], object]:
    """One request; anything but a 200 stops the measurement (a refused request would time as a fast one)."""
    return lambda: client.post(call.path, content=call.body, headers=call.headers).raise_for_status()


def overhead(base_url: str, model: Path, rgb: np.ndarray, rounds: int, warmup: int = 2) -> dict[str, dict]:
    """Per route (``v1``, ``v2``): the medians of the server's round trip and of the direct call (ms), and their
    paired ratio. ``rgb`` is the HxWx3 uint8 image both sides stylize."""
    batch = tensor(rgb)
    requests = calls(model, rgb)
    upload = requests["v1"].body

    def direct_v1() -> bytes:
        image = decode_image(io.BytesIO(upload), "upload")
        return encode_image(stylizer(image.rgb), image.alpha, "JPEG")  # the server's quality is the same default

    with Stylizer(model) as stylizer, httpx.Client(base_url=base_url, timeout=120.0) as client:
        timed = {("v1", "server"): _round_trip(client, requests["v1"]), ("v1", "direct"): direct_v1,
                 ("v2", "server"): _round_trip(client, requests["v2"]), ("v2", "direct"): lambda: stylizer.forward(batch)}
        for call in timed.values():
            for _ in range(warmup):
                call()
        order = list(timed)
        samples: dict[tuple[str, str], list[float]] = {key: [] for key in order}
        for index in range(rounds):
            shift = index % len(order)
            for key in order[shift:] + order[:shift]:
                samples[key].append(timed_ms(timed[key])[1])
    return {route: {"server_ms": round(statistics.median(samples[route, "server"]), 1),
                    "direct_ms": round(statistics.median(samples[route, "direct"]), 1),
                    "ratio": round(paired_speedup(samples[route, "server"], samples[route, "direct"]), 3)}
            for route in ("v1", "v2")}
