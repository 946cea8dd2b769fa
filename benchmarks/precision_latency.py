"""fp32 vs fp16 vs int8 latency on ONNX Runtime CPU, interleaved in one run so they share machine conditions.

    python benchmarks/precision_latency.py artifacts/wave --size 512x512 --threads 1 --repeat 10

Prints a table and writes ``latency.json`` beside the models. Issue #5's suite is the full benchmark;
this is the minimal check that int8 is worth shipping on this CPU.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from stylecast.runtime.backends.onnxruntime import OnnxRuntimeBackend
from stylecast.runtime.images import atomic_write
from stylecast.runtime.metadata import tool_versions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="export folder holding <style>.<precision>.onnx")
    parser.add_argument("--size", default="512x512", help="HxW of the input")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    height, width = (int(v) for v in args.size.split("x"))
    models = {p.name.split(".")[1]: p for p in sorted(args.folder.glob("*.onnx"))}
    backends = {k: OnnxRuntimeBackend(p, providers=["CPUExecutionProvider"], threads=args.threads)
                for k, p in models.items()}
    batch = np.random.default_rng(0).uniform(0, 255, (1, 3, height, width)).astype(np.float32)
    times: dict[str, list[float]] = {k: [] for k in backends}
    for backend in backends.values():
        backend.run(batch)  # warm-up: first call allocates and picks kernels
    for _ in range(args.repeat):
        for name, backend in backends.items():
            start = time.perf_counter()
            backend.run(batch)
            times[name].append((time.perf_counter() - start) * 1000)
    rows = {k: {"median_ms": round(float(np.median(v)), 2), "min_ms": round(min(v), 2)} for k, v in times.items()}
    base = rows.get("fp32", {}).get("median_ms")
    for name, row in rows.items():
        speedup = f"  x{base / row['median_ms']:.2f} vs fp32" if base else ""
        print(f"{name:5s} {row['median_ms']:8.1f} ms median  {row['min_ms']:8.1f} ms min{speedup}")
    result = {"size": [height, width], "threads": args.threads, "repeat": args.repeat, "cpu": platform.processor(),
              "machine": platform.machine(), "versions": json.loads(tool_versions("onnxruntime")), "models": rows}
    atomic_write(args.folder / "latency.json", lambda tmp: tmp.write_text(json.dumps(result, indent=2) + "\n"))


if __name__ == "__main__":
    main()
