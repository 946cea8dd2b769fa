"""A dynamic batcher in front of one inference thread, like Triton's: requests with the same key (model and
image size) that arrive within a short window run as one batch, up to a number of images and of pixels.

Work is admitted by its cost in pixels, not by its count of requests: a 25 MP photo weighs a hundred 512 px ones.
The pixels a request holds, from its decoded upload to its encoded answer, count against one budget; a request
that would overfill it is refused at once (the server answers 503 with Retry-After) rather than left to wait
without end, and memory stays bounded by configuration whatever clients send. The oldest waiting request runs
first, whatever its size. A request that waits or runs past its timeout, or whose client goes away, is given up:
taken out of the queue if it had not started, and stopped between tiles if it had.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable, Hashable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from stylecast.serve.metrics import Metrics

# ``run(key, items, should_stop)``: the batch's results; long work calls ``should_stop()`` between steps and
# raises Cancelled when it says so.
Runner = Callable[[Hashable, list[Any], Callable[[], bool]], list[Any]]


def pixels_of(item: Any) -> int:
    """What an item weighs: height x width, times the batch of a v2 tensor (NCHW); an item is the array, or a tuple
    that holds it first (with its strength, style...)."""
    array = item[0] if isinstance(item, tuple) else item
    shape = getattr(array, "shape", ())
    if len(shape) == 4:
        return int(shape[0] * shape[2] * shape[3])
    return int(shape[0] * shape[1]) if len(shape) >= 2 else 0


class Overloaded(Exception):
    """The budget is full; ``retry_after`` (seconds) estimates when it will have drained."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"server busy: too much work in flight; retry after {retry_after} s")
        self.retry_after = retry_after


class TimedOut(Exception):
    """The request waited or ran past its timeout, or the server is stopping."""


class Cancelled(Exception):
    """Every request of a running batch was given up, so its work stopped early."""


@dataclass(eq=False)  # compared by identity: a queue lookup must never compare the images inside
class _Job:
    item: Any
    images: int  # images in the item (a v2 request may carry several)
    pixels: int
    future: asyncio.Future = field(repr=False)
    arrived: float = field(default_factory=time.monotonic)
    abandoned: bool = False  # its request timed out or went away while it ran


class Batcher:
    """``run`` runs on one thread (the backend uses every core itself); batches of one key are formed in arrival
    order, and the key whose oldest request has waited longest goes first."""

    def __init__(self, run: Runner, metrics: Metrics, window_s: float, max_batch: int, max_batch_pixels: int,
                 max_pixels_in_flight: int) -> None:
        self._run = run
        self.metrics = metrics
        self.window_s = window_s
        self.max_batch = max_batch
        self.max_batch_pixels = max_batch_pixels
        self.max_pixels_in_flight = max_pixels_in_flight
        self._pending: dict[Hashable, list[_Job]] = {}
        self._queued_images = 0
        self._in_flight = 0  # pixels held by admitted requests, decoded upload to encoded answer
        self._seconds_per_pixel = 0.0  # running mean, for Retry-After
        self._running: list[_Job] = []
        self._wake = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stylecast-inference")
        self._task: asyncio.Task | None = None
        self._release: Callable[[], None] | None = None

    def start(self, bind: Callable[[], None] | None = None, release: Callable[[], None] | None = None) -> None:
        """Start dispatching. ``bind`` runs first on the inference thread and ``release`` last (e.g. a CUDA
        context made current there, since inference never runs on the thread that loaded the models)."""
        if bind is not None:
            self._executor.submit(bind).result()
        self._release = release
        self._task = asyncio.get_running_loop().create_task(self._dispatch())

    @property
    def running(self) -> bool:
        """The dispatcher is alive: readiness is false without it, as no request would ever be answered."""
        return self._task is not None and not self._task.done()

    async def stop(self, grace_s: float) -> None:
        """Give up what is queued, stop the running batch at its next step, and wait at most ``grace_s`` for
        the inference thread."""
        for jobs in self._pending.values():
            for job in jobs:
                if not job.future.done():
                    job.future.set_exception(TimedOut("the server is shutting down; retry on another replica"))
        self._pending.clear()
        self._set_queued(0)
        for job in self._running:
            job.abandoned = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._release is not None:
            self._executor.submit(self._release)
        done = asyncio.get_running_loop().run_in_executor(None, self._executor.shutdown, True)
        with contextlib.suppress(asyncio.TimeoutError):  # the step in progress ends alone; nobody awaits it
            await asyncio.wait_for(done, grace_s)

    def retry_after(self) -> int:
        """Seconds until the work in flight has drained at the recent speed (at least 1)."""
        return max(1, math.ceil(self._in_flight * self._seconds_per_pixel))

    def admit(self, pixels: int = 0) -> None:
        """Refuse early when ``pixels`` more would overfill the budget; an idle server takes any one request,
        however large, so the largest image allowed can always be served."""
        if self._in_flight and self._in_flight + pixels > self.max_pixels_in_flight:
            raise Overloaded(self.retry_after())

    @contextmanager
    def reserve(self, pixels: int) -> Iterator[None]:
        """Hold ``pixels`` of the budget for the request's whole life (decoded upload to encoded answer)."""
        self.admit(pixels)
        self._in_flight += pixels
        self.metrics.pixels_in_flight.set(self._in_flight)
        try:
            yield
        finally:
            self._in_flight -= pixels
            self.metrics.pixels_in_flight.set(self._in_flight)

    async def submit(self, key: Hashable, item: Any, timeout_s: float, images: int, pixels: int) -> Any:
        """Queue ``item`` under ``key`` and wait for its result; raises TimedOut, Cancelled or run's error. The
        caller holds the item's pixels (``reserve``); ``pixels`` sizes its batch."""
        job = _Job(item, images, pixels, asyncio.get_running_loop().create_future())
        self._pending.setdefault(key, []).append(job)
        self._set_queued(self._queued_images + images)
        self._wake.set()
        try:
            return await asyncio.wait_for(asyncio.shield(job.future), timeout_s)
        except asyncio.TimeoutError as exc:
            queued = self._withdraw(key, job)
            raise TimedOut(f"timed out after {timeout_s:g} s {'in the queue' if queued else 'in inference'}; "
                           "retry later") from exc
        except asyncio.CancelledError:  # the client went away
            self._withdraw(key, job)
            raise

    def _withdraw(self, key: Hashable, job: _Job) -> bool:
        """Take a given-up job out of the queue; False if it is already running (it stops at its next step, and
        its result is dropped)."""
        jobs = self._pending.get(key, [])
        if job in jobs:
            jobs.remove(job)
            if not jobs:
                del self._pending[key]
            self._set_queued(self._queued_images - job.images)
            return True
        job.abandoned = True
        return False

    def _set_queued(self, images: int) -> None:
        self._queued_images = images
        self.metrics.queue_depth.set(images)

    def _take(self, key: Hashable) -> list[_Job]:
        """The oldest jobs of ``key`` up to max_batch images and max_batch_pixels (at least one job)."""
        jobs = self._pending.get(key, [])
        batch, images, pixels = [], 0, 0
        while jobs and (not batch or (images + jobs[0].images <= self.max_batch
                                      and pixels + jobs[0].pixels <= self.max_batch_pixels)):
            images += jobs[0].images
            pixels += jobs[0].pixels
            batch.append(jobs.pop(0))
        if not jobs:
            self._pending.pop(key, None)
        self._set_queued(self._queued_images - images)
        return batch

    def _oldest_key(self) -> Hashable:
        """Oldest first across keys: a steady stream of one size never starves the others."""
        return min(self._pending, key=lambda k: self._pending[k][0].arrived)

    def _full(self, key: Hashable) -> bool:
        jobs = self._pending.get(key, [])
        return (sum(job.images for job in jobs) >= self.max_batch
                or sum(job.pixels for job in jobs) >= self.max_batch_pixels)

    async def _dispatch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._pending:
                self._wake.clear()
                await self._wake.wait()
            key = self._oldest_key()
            deadline = self._pending[key][0].arrived + self.window_s  # the oldest waits at most one window
            while key in self._pending and not self._full(key) and time.monotonic() < deadline:
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), deadline - time.monotonic())
                except asyncio.TimeoutError:
                    break
            batch = self._take(key)
            if batch:
                await self._execute(loop, key, batch)

    async def _execute(self, loop: asyncio.AbstractEventLoop, key: Hashable, batch: list[_Job]) -> None:
        pixels = sum(job.pixels for job in batch)
        started = time.monotonic()
        self._running = batch

        def given_up() -> bool:
            return all(job.abandoned for job in batch)

        timings = [(job.arrived, started, job.images) for job in batch]
        try:
            results = await loop.run_in_executor(self._executor, self._run, key, [job.item for job in batch],
                                                 given_up)
        except Exception as exc:  # the handler turns it into a one-line answer
            self.metrics.stats.executed(str(key[1]), timings, time.monotonic(), ok=False)
            for job in batch:
                if not job.abandoned and not job.future.done():
                    job.future.set_exception(exc)
            return
        finally:
            self._running = []
        self.metrics.stats.executed(str(key[1]), timings, time.monotonic(), ok=True)
        seconds = time.monotonic() - started
        self.metrics.batch_size.observe(sum(job.images for job in batch))
        self.metrics.inference.labels(model=str(key[1])).observe(seconds)
        share = seconds / max(pixels, 1)
        self._seconds_per_pixel = (share if not self._seconds_per_pixel
                                   else 0.8 * self._seconds_per_pixel + 0.2 * share)
        for job, result in zip(batch, results, strict=True):
            if not job.abandoned and not job.future.done():
                job.future.set_result(result)
