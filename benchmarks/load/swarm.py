"""Locust as a library, headless: ``users`` closed-loop clients repeat one request against a server for ``seconds``,
then each ends after the request it has in flight, so every request the server answered is counted here too and the
tally can be checked against the server's /metrics.

Each user ends itself, between two requests, once the time is up. Locust's own stop kills a user it finds waiting
between tasks, and a user woken in the same instant has already sent its next request when the kill lands, so
some requests would reach the server and never be counted here (the server logs them as closed by the client).

Locust's users are gevent greenlets on FastHttpUser's client (geventhttpclient, gevent sockets of its own), so
they run concurrently without gevent patching the standard library. Patching it, as ``import locust`` does by
default, would turn the threads of the process around it (the server's log reader, a test runner's own) into
greenlets; the environment variable below, Locust's own switch, keeps it off, and must be set before the import.
"""

from __future__ import annotations

import os

os.environ.setdefault("LOCUST_SKIP_MONKEY_PATCH", "1")

import time  # noqa: E402

from locust import FastHttpUser, task  # noqa: E402
from locust.env import Environment  # noqa: E402
from locust.exception import StopUser  # noqa: E402

from stylecast.benchmarks.load.client import Burst, Call  # noqa: E402


def user_class(call: Call, deadline: float, timeout: float) -> type[FastHttpUser]:
    """A Locust user that posts ``call`` back to back until ``deadline`` (``time.monotonic()``): no think time, a
    client that always has the next image; except that after a 503 it waits the Retry-After the server gave, as a
    well-behaved client does (one that did not would flood the server with refusals, and the run would measure
    those instead of the images)."""

    class Client(FastHttpUser):
        network_timeout = timeout
        connection_timeout = timeout
        backoff = 0.0

        def wait_time(self) -> float:
            return self.backoff

        @task
        def post(self) -> None:
            if time.monotonic() >= deadline:
                raise StopUser()
            answer = self.client.post(call.path, data=call.body, headers=call.headers, name=call.label)
            busy = answer.status_code == 503
            self.backoff = float(answer.headers.get("retry-after") or 0) if busy else 0.0

    Client.__name__ = f"{call.label.capitalize()}Client"
    return Client


def swarm(base_url: str, call: Call, users: int, seconds: float, timeout: float = 120.0) -> Burst:
    """Every answer by status code, the 200s' latencies (Locust's own clock), and the seconds from the first user
    starting to the last one ending."""
    result = Burst()
    started = time.perf_counter()
    env = Environment(user_classes=[user_class(call, time.monotonic() + seconds, timeout)], host=base_url)

    def on_request(response: object, response_time: float, exception: BaseException | None, **_: object) -> None:
        # 0: no answer (refused, reset, timed out); named by the client's exception, so a report says which
        code = getattr(response, "status_code", 0) or f"error ({type(exception).__name__})"
        headers = getattr(response, "headers", None) or {}
        result.record(code, response_time / 1000, headers.get("retry-after"))

    env.events.request.add_listener(on_request)
    runner = env.create_local_runner()
    runner.start(users, spawn_rate=users)
    runner.spawning_greenlet.join()
    # After the deadline each user ends once its request in flight is answered (or times out) and any Retry-After
    # it was given has passed; one still running after that is killed by quit() and shows as a miscount.
    runner.user_greenlets.join(timeout=max(seconds, 0) + 2 * timeout)
    result.seconds = time.perf_counter() - started
    runner.quit()
    return result
