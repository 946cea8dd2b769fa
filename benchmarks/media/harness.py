"""What the media benchmarks share: their common options, and running the real `stylecast` command."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def parser(doc: str) -> argparse.ArgumentParser:
    """--model, --photo (seeds the generated media) and --out (where media and results go)."""
    found = argparse.ArgumentParser(description=doc.splitlines()[0])
    found.add_argument("--model", type=Path, required=True, help="exported .onnx model")
    found.add_argument("--photo", type=Path, required=True, help="real photo the test media are made from")
    found.add_argument("--out", type=Path, default=Path("artifacts/bench"))
    return found


def stylecast(*args: str) -> tuple[float, float, str]:
    """Run `stylecast ARGS` in a child process as a user would: seconds taken, the child's own peak RSS in MiB
    (from wait4, so earlier children do not count) and the command line."""
    cmd = [sys.executable, "-m", "stylecast.cli", *args]
    with tempfile.TemporaryFile("w+") as log:
        tic = time.perf_counter()
        child = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, text=True)
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - tic
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode != 0:
            log.seek(0)
            raise SystemExit(log.read())
    return seconds, usage.ru_maxrss / 1024, " ".join(["stylecast", *args])  # Linux reports KiB
