"""One `stylecast serve` process on a free port, for the tests and the load benchmark: started, waited for,
stopped with SIGTERM (as a process manager stops it), with its exit code and peak memory."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.request import urlopen

URL_LINE = re.compile(r"stylecast serve: (http://\S+)")


@dataclass
class ServerProcess:
    process: subprocess.Popen
    url: str = ""
    log: list[str] = field(default_factory=list)  # its stderr and stdout, line by line

    def peak_rss_mib(self) -> float:
        """The server's peak resident memory so far (VmHWM), while it runs."""
        text = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(re.search(r"VmHWM:\s+(\d+) kB", text).group(1)) / 1024

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM, then the exit code once every request in flight has been answered."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)


def _drain(server: ServerProcess, seen: threading.Event) -> None:
    """Keep reading the server's output (a full pipe would block it); note the URL it prints."""
    for line in server.process.stdout:
        server.log.append(line)
        match = URL_LINE.search(line)
        if match and not server.url:
            server.url = match.group(1)
            seen.set()
    seen.set()


def start_server(models: list[Path], *args: str, env: dict | None = None, timeout: float = 60.0) -> ServerProcess:
    """`stylecast serve --port 0` with ``args``; returns once /v2/health/ready answers."""
    command = [sys.executable, "-m", "stylecast.cli", "serve", "--port", "0", "--log-level", "warning",
               *[part for model in models for part in ("--model", str(model))], *args]
    # stderr and stdout in one pipe: uvicorn's access log goes to stdout, and the tests read it for what it must not
    # show.
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, **(env or {})})
    server = ServerProcess(process)
    seen = threading.Event()
    threading.Thread(target=_drain, args=(server, seen), daemon=True).start()
    deadline = time.monotonic() + timeout
    seen.wait(timeout)
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with urlopen(f"{server.url}/v2/health/ready", timeout=2) as answer:
                if answer.status == 200:
                    return server
        except (OSError, ValueError):
            time.sleep(0.1)
    process.kill()
    process.wait()
    raise RuntimeError(f"stylecast serve did not start: {''.join(server.log)[-2000:]}")


@contextmanager
def running_server(models: list[Path], *args: str, env: dict | None = None) -> Iterator[ServerProcess]:
    server = start_server(models, *args, env=env)
    try:
        yield server
    finally:
        if server.process.poll() is None:
            server.stop()
