"""Triton's perf_analyzer against `stylecast serve`, one concurrency at a time: the load tool Triton users know, on
the v2 protocol with binary tensors, so its figures read as they would against Triton itself.

perf_analyzer reads the model's /v2/models/{name}/config and sends random FP32 tensors of the given shape. It measures
a fixed count of requests (``--request-count``): its default, time windows until three in a row agree within 10%,
rarely settles on a shared 2-core machine where a 512² image takes a second. It stops at the first error, and a 503
from a full queue is one: the row then says what it stopped on instead of giving figures.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

from stylecast.runtime.errors import StylecastError
from stylecast.runtime.formats import INPUT


def environment(binary: str) -> dict[str, str]:
    """The environment to run ``binary`` in. perf_analyzer links the CUDA runtime even to speak HTTP; where pip
    installed it into a venv (`make perf-analyzer`), the runtime's wheel lies in that venv, off the loader's path."""
    found = shutil.which(binary)
    if found is None:
        raise StylecastError(f"--perf-analyzer {binary}: no such program (make perf-analyzer installs one)")
    libs = sorted(Path(found).resolve().parent.parent.glob("lib/python3*/site-packages/nvidia/cuda_runtime/lib"))
    if not libs:
        return dict(os.environ)
    path = os.pathsep.join(filter(None, [str(libs[-1]), os.environ.get("LD_LIBRARY_PATH")]))
    return {**os.environ, "LD_LIBRARY_PATH": path}


def version(binary: str) -> str:
    """Its version line; one that cannot start fails here, before a benchmark starts any server."""
    done = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=60, env=environment(binary))
    text = (done.stdout + done.stderr).strip()
    if done.returncode != 0 or "Perf Analyzer" not in text:
        raise StylecastError(f"--perf-analyzer {binary}: {text.splitlines()[-1] if text else done.returncode}")
    return text.splitlines()[0]


def perf_analyzer(binary: str, base_url: str, model: str, size: tuple[int, int], concurrency: int,
                  requests: int, timeout: float = 3600.0) -> dict:
    """Its throughput (inferences/s) and p50/p95/p99 latency (ms) over ``requests`` at ``concurrency`` for
    (height, width) ``size``, or the error it stopped on."""
    with tempfile.TemporaryDirectory() as folder:
        table = Path(folder) / "perf.csv"
        command = [binary, "-m", model, "-u", urlsplit(base_url).netloc, "-i", "http",
                   "--shape", f"{INPUT}:3,{size[0]},{size[1]}", "--input-tensor-format", "binary",
                   "--output-tensor-format", "binary", "--concurrency-range", f"{concurrency}:{concurrency}",
                   "--request-count", str(requests), "-f", str(table)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=environment(binary))
        if done.returncode != 0 or not table.is_file():
            lines = [line.strip() for line in (done.stdout + done.stderr).splitlines() if line.strip()]
            return {"concurrency": concurrency, "error": lines[-1] if lines else f"exit code {done.returncode}"}
        with table.open() as rows:
            row = next(csv.DictReader(rows))
    return {"concurrency": concurrency, "infer_per_s": round(float(row["Inferences/Second"]), 2),
            **{f"p{q}_ms": round(int(row[f"p{q} latency"]) / 1000, 1) for q in (50, 95, 99)}}
