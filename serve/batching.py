"""A dynamic batcher in front of one inference thread, like Triton's: requests with the same key (model and
image size) that arrive within a short window run as one batch, up to a maximum batch size.

The queue is bounded: a request that would overfill it is refused at once (the server answers 503 with
Retry-After) rather than left to wait without end. A request that waits or runs past its timeout is given up
(taken out of the queue if it had not started), so no request hangs and none is dropped without an answer.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from stylecast.serve.metrics import Metrics


class Overloaded(Exception):
    """The queue is full; ``retry_after`` (seconds) estimates when it will have drained."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"server busy: the queue is full; retry after {retry_after} s")
        self.retry_after = retry_after


class TimedOut(Exception):
    """The request waited or ran past its timeout."""


@dataclass(eq=False)  # compared by identity: a queue lookup must never compare the images inside
class _Job:
    item: Any
    size: int  # images in the item (a v2 request may carry several)
    future: asyncio.Future = field(repr=False)
    arrived: float = field(default_factory=time.monotonic)
    abandoned: bool = False  # its request timed out or went away while it ran


class Batcher:
    """``run(key, items) -> results`` runs on one thread (the backend uses every core itself); batches of one
    key are formed in arrival order, the oldest key first."""

    def __init__(self, run: Callable[[Hashable, list[Any]], list[Any]], metrics: Metrics, window_s: float,
                 max_batch: int, max_queue: int) -> None:
        self._run = run
        self.metrics = metrics
        self.window_s = window_s
        self.max_batch = max_batch
        self.max_queue = max_queue
        self._pending: dict[Hashable, list[_Job]] = {}  # insertion order: the key whose oldest job came first
        self._depth = 0
        self._seconds_per_image = 0.0  # running mean, for Retry-After
        self._wake = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stylecast-inference")
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._dispatch())

    async def stop(self) -> None:
        """After the server has answered every request: end the dispatcher and the inference thread."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._executor.shutdown(wait=True)

    def retry_after(self) -> int:
        """Seconds until the queue has drained at the recent speed (at least 1)."""
        return max(1, math.ceil(self._depth * self._seconds_per_image))

    def admit(self, size: int = 1) -> None:
        """Refuse early (before an upload is decoded) when ``size`` more images would overfill the queue."""
        if self._depth and self._depth + size > self.max_queue:
            raise Overloaded(self.retry_after())

    async def submit(self, key: Hashable, item: Any, timeout_s: float, size: int = 1) -> Any:
        """Queue ``item`` under ``key`` and wait for its result; raises Overloaded, TimedOut, or run's error."""
        self.admit(size)
        job = _Job(item, size, asyncio.get_running_loop().create_future())
        self._pending.setdefault(key, []).append(job)
        self._set_depth(self._depth + size)
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
        """Take a given-up job out of the queue; False if it is already running (its result is dropped)."""
        jobs = self._pending.get(key, [])
        if job in jobs:
            jobs.remove(job)
            if not jobs:
                del self._pending[key]
            self._set_depth(self._depth - job.size)
            return True
        job.abandoned = True
        return False

    def _set_depth(self, depth: int) -> None:
        self._depth = depth
        self.metrics.queue_depth.set(depth)

    def _take(self, key: Hashable) -> list[_Job]:
        """The oldest jobs of ``key`` up to max_batch images (at least one job, however large)."""
        jobs = self._pending.get(key, [])
        batch, images = [], 0
        while jobs and (not batch or images + jobs[0].size <= self.max_batch):
            images += jobs[0].size
            batch.append(jobs.pop(0))
        if not jobs:
            self._pending.pop(key, None)
        self._set_depth(self._depth - images)
        return batch

    def _images(self, key: Hashable) -> int:
        return sum(job.size for job in self._pending.get(key, []))

    async def _dispatch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._pending:
                self._wake.clear()
                await self._wake.wait()
            key = next(iter(self._pending))
            deadline = self._pending[key][0].arrived + self.window_s  # the oldest waits at most one window
            while key in self._pending and self._images(key) < self.max_batch and time.monotonic() < deadline:
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), deadline - time.monotonic())
                except asyncio.TimeoutError:
                    break
            batch = self._take(key)
            if batch:
                await self._execute(loop, key, batch)

    async def _execute(self, loop: asyncio.AbstractEventLoop, key: Hashable, batch: list[_Job]) -> None:
        images = sum(job.size for job in batch)
        started = time.perf_counter()
        try:
            results = await loop.run_in_executor(self._executor, self._run, key, [job.item for job in batch])
        except Exception as exc:  # the handler turns it into a one-line answer
            for job in batch:
                if not job.abandoned:
                    job.future.set_exception(exc)
            return
        seconds = time.perf_counter() - started
        self.metrics.batch_size.observe(images)
        self.metrics.inference.labels(model=str(key[1])).observe(seconds)
        share = seconds / images
        self._seconds_per_image = share if not self._seconds_per_image else 0.8 * self._seconds_per_image + 0.2 * share
        for job, result in zip(batch, results, strict=True):
            if not job.abandoned:
                job.future.set_result(result)
