"""The dynamic batcher alone (no server): batches by key up to a count and a pixel budget, admits by pixels,
serves the oldest request first, gives up timed-out requests, stops given-up work between steps, and stops."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

pytest.importorskip("prometheus_client")

from stylecast.serve.batching import Batcher, Cancelled, Overloaded, TimedOut, pixels_of  # noqa: E402
from stylecast.serve.metrics import Metrics  # noqa: E402


def _batcher(run, max_batch=8, max_batch_pixels=10**9, budget=10**9, window_s=0.0) -> Batcher:
    return Batcher(run, Metrics(), window_s=window_s, max_batch=max_batch, max_batch_pixels=max_batch_pixels,
                   max_pixels_in_flight=budget)


def test_items_weigh_their_pixels():
    assert pixels_of((np.zeros((30, 20, 3), np.uint8), 1.0)) == 600
    assert pixels_of(np.zeros((2, 3, 30, 20), np.float32)) == 1200  # a v2 batch of two


def test_same_key_requests_batch_up_to_max_batch_and_the_pixel_budget():
    calls = []

    def run(key, items, should_stop):
        calls.append((key, len(items)))
        return [item * 2 for item in items]

    async def scenario(max_batch, max_batch_pixels):
        batcher = _batcher(run, max_batch, max_batch_pixels, window_s=0.05)
        batcher.start()
        images = [np.full((2, 2, 3), i) for i in range(6)]
        results = await asyncio.gather(*(batcher.submit(("image", "m", 2), im, 5.0, 1, 4) for im in images))
        await batcher.stop(1.0)
        return results

    results = asyncio.run(scenario(max_batch=4, max_batch_pixels=100))
    assert [int(r[0, 0, 0]) for r in results] == [0, 2, 4, 6, 8, 10]
    assert [n for _, n in calls] == [4, 2]
    calls.clear()
    asyncio.run(scenario(max_batch=8, max_batch_pixels=12))  # three 4-pixel images per batch
    assert [n for _, n in calls] == [3, 3]


def test_admission_counts_pixels_and_an_idle_server_takes_one_large_request():
    batcher = _batcher(lambda key, items, stop: items, budget=1000)
    # Larger than the budget, but nothing else is in flight.
    with batcher.reserve(5000), pytest.raises(Overloaded, match="retry after"):
        batcher.admit(1)
    with batcher.reserve(600):
        batcher.admit(400)
        with pytest.raises(Overloaded):
            batcher.admit(401)
        with pytest.raises(Overloaded), batcher.reserve(401):
            pass
    batcher.admit(10**6)  # everything was given back
    assert batcher.metrics.pixels_in_flight._value.get() == 0


def test_the_oldest_request_runs_first_across_sizes():
    """A steady stream of one size must not starve a request of another size that came before most of it."""
    order = []
    gate = threading.Event()

    def run(key, items, should_stop):
        gate.wait(5)
        order.append(key[2])
        return items

    async def scenario():
        batcher = _batcher(run, max_batch=1)
        batcher.start()
        loop = asyncio.get_running_loop()
        submit = batcher.submit
        blocker = loop.create_task(submit(("image", "m", 1), 0, 5.0, 1, 1))
        await asyncio.sleep(0.05)  # running, held at the gate
        small = [loop.create_task(submit(("image", "m", 1), i, 5.0, 1, 1)) for i in range(2)]
        await asyncio.sleep(0.01)
        large = loop.create_task(submit(("image", "m", 2), 9, 5.0, 1, 4))
        await asyncio.sleep(0.01)
        small += [loop.create_task(submit(("image", "m", 1), i, 5.0, 1, 1)) for i in range(3)]
        gate.set()
        await asyncio.gather(blocker, large, *small)
        await batcher.stop(1.0)

    asyncio.run(scenario())
    assert order == [1, 1, 1, 2, 1, 1, 1]


def test_full_queue_refuses_and_timed_out_requests_leave_it():
    """Arrays inside queued jobs must not be compared when a timed-out one is withdrawn (a 500 found under load)."""
    release = threading.Event()

    def run(key, items, should_stop):
        release.wait(5)
        return items

    async def scenario():
        batcher = _batcher(run, max_batch=1, budget=48)
        batcher.start()
        image = np.zeros((4, 4, 3), np.uint8)
        loop = asyncio.get_running_loop()
        first = loop.create_task(batcher.submit(("image", "m"), image, 5.0, 1, 16))
        await asyncio.sleep(0.05)  # the first is running, blocked
        queued = [loop.create_task(batcher.submit(("image", "m"), image.copy(), 0.1, 1, 16)) for _ in range(3)]
        with batcher.reserve(32), pytest.raises(Overloaded):
            batcher.admit(17)
        outcomes = await asyncio.gather(*queued, return_exceptions=True)
        depth = batcher.metrics.queue_depth._value.get()
        release.set()
        await first
        await batcher.stop(1.0)
        return outcomes, depth

    outcomes, depth = asyncio.run(scenario())
    assert all(isinstance(o, TimedOut) and "in the queue" in str(o) for o in outcomes) and depth == 0


def test_given_up_work_stops_between_steps_and_the_next_request_runs():
    steps = []

    def run(key, items, should_stop):
        if key[0] == "tiled":
            for step in range(500):
                if should_stop():
                    raise Cancelled(f"given up after {step} steps")
                steps.append(step)
                time.sleep(0.01)
        return items

    async def scenario():
        batcher = _batcher(run)
        batcher.start()
        huge = asyncio.get_running_loop().create_task(batcher.submit(("tiled", "m", 1), "huge", 0.2, 1, 10**6))
        with pytest.raises(TimedOut, match="in inference"):
            await huge
        started = time.monotonic()
        small = await batcher.submit(("image", "m", 8), "small", 5.0, 1, 64)
        waited = time.monotonic() - started
        await batcher.stop(1.0)
        return small, waited

    small, waited = asyncio.run(scenario())
    assert small == "small" and waited < 0.5  # the huge job stopped at its next step, not after 500 of them
    assert 5 < len(steps) < 100


def test_stop_gives_up_queued_work_and_readiness_follows_the_dispatcher():
    release = threading.Event()

    def run(key, items, should_stop):
        release.wait(5)
        return items

    async def scenario():
        batcher = _batcher(run, max_batch=1)
        assert not batcher.running
        batcher.start()
        assert batcher.running
        loop = asyncio.get_running_loop()
        running = loop.create_task(batcher.submit(("image", "m"), 1, 5.0, 1, 1))
        await asyncio.sleep(0.05)
        queued = loop.create_task(batcher.submit(("image", "m"), 2, 5.0, 1, 1))
        await asyncio.sleep(0.01)
        started = time.monotonic()
        await batcher.stop(0.2)  # the running step is blocked for 5 s: stop waits only its grace
        stopped_in = time.monotonic() - started
        release.set()
        outcome = await asyncio.gather(queued, return_exceptions=True)
        running.cancel()
        return stopped_in, outcome[0], batcher.running

    stopped_in, outcome, running = asyncio.run(scenario())
    assert stopped_in < 1.0 and isinstance(outcome, TimedOut) and "shutting down" in str(outcome)
    assert not running


def test_the_engines_are_bound_to_the_thread_that_runs_them():
    """A CUDA context is current per thread: ``bind`` and ``release`` run on the inference thread itself."""
    threads: dict[str, int] = {}

    def run(key, items, should_stop):
        threads.setdefault("run", threading.get_ident())
        return items

    async def scenario():
        batcher = _batcher(run)
        batcher.start(lambda: threads.setdefault("bind", threading.get_ident()),
                      lambda: threads.setdefault("release", threading.get_ident()))
        await batcher.submit(("image", "m"), 1, 5.0, 1, 1)
        await batcher.stop(1.0)

    asyncio.run(scenario())
    assert threads["bind"] == threads["run"] == threads["release"] != threading.get_ident()
