"""What the media benchmarks share: their common options, and running the real `stylecast` command."""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path


def parser(doc: str) -> argparse.ArgumentParser:
    """--model, --photo (seeds the generated media) and --out (where media and results go)."""
    found = argparse.ArgumentParser(description=doc.splitlines()[0])
    found.add_argument("--model", type=Path, required=True, help="exported .onnx model")
    found.add_argument("--photo", type=Path, required=True, help="real photo the test media are made from")
    found.add_argument("--out", type=Path, default=Path("artifacts/bench"))
    return found


def stylecast(*args: str) -> tuple[float, str]:
    """Run `stylecast ARGS` in a child process as a user would; seconds taken and the command line."""
    cmd = [sys.executable, "-m", "stylecast.runtime.cli", *args]
    tic = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(done.stderr)
    return time.perf_counter() - tic, " ".join(["stylecast", *args])
