"""Ray Serve's overhead: `stylecast serve --ray` (one replica) against `stylecast serve`, on the same cores, at
concurrency 1 and 8, for /v1/stylize and a binary v2 infer.

    python -m stylecast.benchmarks.load.ray_overhead --model artifacts/wave/wave.fp32.onnx [--size 512] \
        [--threads 2] [--requests 16] [--rounds 3]

Both servers are up for the whole run, each with the same ``--threads``, and take turns round by round in an order
that alternates, so a neighbour's load or a frequency change lands on both alike. Each turn sends ``--requests``
per client from ``concurrency`` clients (one connection each) and times the whole burst; the overhead is the median
over rounds of Ray's seconds over local's for the same burst. The Ray server starts its own local cluster, as a
user's first `serve --ray` does; its start is reported apart. Writes ``serve.json`` and ``serve.md`` to ``--out``
(benchmarks/results/ray by `make bench-ray-serve`).
"""

from __future__ import annotations

import argparse
import socket
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from stylecast.benchmarks.load.client import Call, calls
from stylecast.benchmarks.load.server import ServerProcess, start_server
from stylecast.benchmarks.report import write_results
from stylecast.runtime.images import fit
from stylecast.runtime.machine import describe_class, fingerprint

TARGET = 1.10  # Ray Serve may add at most a tenth at concurrency 8
LEVELS = (1, 8)
SERVERS = ("local", "ray")


def free_port() -> int:
    """A port free now (Ray Serve's proxy takes no --port 0)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def burst(url: str, call: Call, concurrency: int, requests: int) -> float:
    """Seconds for ``concurrency`` clients to send ``requests`` each, one at a time; anything but a 200 stops the
    measurement (a refused request would time as a fast one)."""

    def client() -> None:
        with httpx.Client(base_url=url, timeout=120.0) as session:
            for _ in range(requests):
                session.post(call.path, content=call.body, headers=call.headers).raise_for_status()

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        for done in [pool.submit(client) for _ in range(concurrency)]:
            done.result()
    return time.perf_counter() - start


def measure(servers: dict[str, ServerProcess], requests: dict[str, Call], rounds: int, per_client: int) -> list[dict]:
    """One row per route and concurrency: each server's median burst seconds and the paired Ray/local ratio."""
    rows = []
    for route, call in requests.items():
        for concurrency in LEVELS:
            for server in servers.values():  # connections and shapes set up before timing
                burst(server.url, call, concurrency, 1)
            seconds: dict[str, list[float]] = {name: [] for name in SERVERS}
            for index in range(rounds):
                for name in SERVERS if index % 2 == 0 else SERVERS[::-1]:
                    seconds[name].append(burst(servers[name].url, call, concurrency, per_client))
            ratios = [ray / local for ray, local in zip(seconds["ray"], seconds["local"], strict=True)]
            images = concurrency * per_client
            rows.append({"route": route, "concurrency": concurrency, "images": images,
                         "local_s": round(statistics.median(seconds["local"]), 2),
                         "ray_s": round(statistics.median(seconds["ray"]), 2),
                         "local_images_per_s": round(images / statistics.median(seconds["local"]), 2),
                         "ray_images_per_s": round(images / statistics.median(seconds["ray"]), 2),
                         "ratio": round(statistics.median(ratios), 3)})
            print(rows[-1], flush=True)
    return rows


def markdown(result: dict) -> str:
    lines = [f"# `serve --ray` against `serve` ({result['size']} px images)", "",
             f"Machine: {result['machine']}. Model: {result['model']}. Both servers run with --threads "
             f"{result['threads']} (the Ray one as one replica of {result['threads']} CPUs on a local cluster it "
             f"started: {result['ray_start_s']} s to answer, against {result['local_start_s']} s). Each figure is "
             f"the median of {result['rounds']} interleaved bursts; the overhead is the median of each round's "
             f"Ray/local ratio. Target at concurrency 8: at most +{round((TARGET - 1) * 100)}%.", "",
             "| route | concurrency | images per burst | local images/s | Ray images/s | Ray's overhead |",
             "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['route']} | {r['concurrency']} | {r['images']} | {r['local_images_per_s']} | "
              f"{r['ray_images_per_s']} | {round((r['ratio'] - 1) * 100):+d}% |" for r in result["rows"]]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--photo", type=Path, default=Path("benchmarks/photos/chelsea.jpg"))
    parser.add_argument("--size", type=int, default=512, help="side of the square image sent")
    parser.add_argument("--threads", type=int, default=2, help="inference threads of each server")
    parser.add_argument("--requests", type=int, default=16, help="requests per client per burst")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/ray"))
    args = parser.parse_args()
    rgb = fit(np.asarray(Image.open(args.photo).convert("RGB")), args.size, args.size)
    threads = ("--threads", str(args.threads))
    servers: dict[str, ServerProcess] = {}
    started: dict[str, float] = {}
    try:
        for name, extra in (("local", ()), ("ray", ("--ray", "--port", str(free_port())))):
            start = time.perf_counter()
            servers[name] = start_server([args.model], *threads, *extra, timeout=300.0)
            started[name] = round(time.perf_counter() - start, 1)
        rows = measure(servers, calls(args.model, rgb), args.rounds, args.requests)
    finally:
        for server in servers.values():
            server.stop()
    result = {"model": str(args.model), "size": args.size, "threads": args.threads, "rounds": args.rounds,
              "machine": describe_class(fingerprint()), "local_start_s": started["local"],
              "ray_start_s": started["ray"], "target": TARGET, "rows": rows}
    write_results(args.out / "serve", result, markdown(result))
    print(f"wrote {args.out / 'serve.md'}")


if __name__ == "__main__":
    main()
