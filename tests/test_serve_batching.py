"""The dynamic batcher alone (no server): batches by key, refuses when full, and gives up timed-out requests."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest

pytest.importorskip("prometheus_client")

from stylecast.serve.batching import Batcher, Overloaded, TimedOut  # noqa: E402
from stylecast.serve.metrics import Metrics  # noqa: E402


def test_same_key_requests_batch_up_to_max_batch():
    calls = []

    def run(key, items):
        calls.append((key, len(items)))
        return [item * 2 for item in items]

    async def scenario():
        batcher = Batcher(run, Metrics(), window_s=0.05, max_batch=4, max_queue=6)
        batcher.start()
        images = [np.full((2, 2, 3), i) for i in range(6)]
        results = await asyncio.gather(*(batcher.submit(("image", "m", 2), im, 5.0) for im in images))
        await batcher.stop()
        return results

    results = asyncio.run(scenario())
    assert [int(r[0, 0, 0]) for r in results] == [0, 2, 4, 6, 8, 10]
    assert calls[:2] == [(("image", "m", 2), 4), (("image", "m", 2), 2)]


def test_full_queue_refuses_and_timed_out_requests_leave_it():
    """Arrays inside queued jobs must not be compared when a timed-out one is withdrawn (a 500 found under load)."""
    release = threading.Event()

    def run(key, items):
        release.wait(5)
        return items

    async def scenario():
        batcher = Batcher(run, Metrics(), window_s=0.0, max_batch=1, max_queue=3)
        batcher.start()
        image = np.zeros((4, 4, 3), np.uint8)
        first = asyncio.get_running_loop().create_task(batcher.submit(("image", "m"), image, 5.0))
        await asyncio.sleep(0.05)  # the first is running, blocked
        queued = [asyncio.get_running_loop().create_task(batcher.submit(("image", "m"), image.copy(), 0.1))
                  for _ in range(3)]
        await asyncio.sleep(0.01)
        with pytest.raises(Overloaded):
            batcher.admit()
        outcomes = await asyncio.gather(*queued, return_exceptions=True)
        depth = batcher.metrics.queue_depth._value.get()
        release.set()
        await first
        await batcher.stop()
        return outcomes, depth

    outcomes, depth = asyncio.run(scenario())
    assert all(isinstance(o, TimedOut) and "in the queue" in str(o) for o in outcomes) and depth == 0
