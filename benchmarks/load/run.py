"""`make serve-load`: `stylecast serve` under load on this machine, each model with dynamic batching on and off.
Locust users (closed loop, no think time, but a 503's Retry-After honoured) post a 512x512 JPEG to /v1/stylize and
binary v2 infers, for a fixed time at each number of users; every request must be answered 200 or 503 and the
server's /metrics must count exactly what Locust saw. A run that loses or miscounts a request fails (exit 1) after
writing its report. In the same server run, at concurrency 1, the round trip is timed against the model called
directly (the server's overhead), and with ``--perf-analyzer`` Triton's perf_analyzer measures the v2 route at the
same concurrencies.

    python -m stylecast.benchmarks.load.run --model artifacts/wave/wave.fp32.onnx --model artifacts/wave/wave.int8.onnx
"""

from __future__ import annotations

import argparse
import datetime
import sys
from importlib.metadata import version as package_version
from pathlib import Path

import numpy as np

from stylecast.benchmarks.load.client import Call, calls, request_counts, scrape
from stylecast.benchmarks.load.overhead import TARGET, overhead
from stylecast.benchmarks.load.perf_analyzer import perf_analyzer, version
from stylecast.benchmarks.load.server import running_server
from stylecast.benchmarks.load.swarm import swarm
from stylecast.benchmarks.report import write_results
from stylecast.runtime.artifacts import read_metadata
from stylecast.runtime.errors import StylecastError
from stylecast.runtime.formats import triton_model_name
from stylecast.runtime.images import atomic_write, fit, load_image
from stylecast.runtime.machine import describe_class, fingerprint

# (label, server flags): the same server with Triton-like dynamic batching, and one image per call.
BATCHING = {"on": ("--max-batch", "8", "--batch-window-ms", "5"), "off": ("--max-batch", "1")}
ROUTES = {"v1": "POST /v1/stylize (JPEG in, JPEG out)", "v2": "v2 infer, binary FP32 tensors in and out"}


def level(url: str, call: Call, users: int, seconds: float) -> dict:
    """One row: Locust's counts and latencies at ``users``, and whether the server's /metrics counted the same."""
    before = request_counts(scrape(url), call.route)
    result = swarm(url, call, users, seconds)
    after = request_counts(scrape(url), call.route)
    served = {code: after[code] - before[code] for code in after if after[code] != before[code]}
    client = dict(result.codes)
    return {"route": call.label, "concurrency": users, "requests": sum(client.values()), "ok": client.get(200, 0),
            "busy_503": client.get(503, 0), "seconds": round(result.seconds, 1),
            "throughput_per_s": round(result.throughput, 2),
            **{f"p{q}_ms": _round(result.percentile_ms(q)) for q in (50, 95, 99)},
            "client_codes": {str(k): v for k, v in client.items()},
            "server_codes": {str(k): v for k, v in served.items()},
            "only_200_503": set(client) <= {200, 503}, "metrics_agree": client == served}


def measure(model: Path, batching: str, rgb: np.ndarray, levels: list[int], seconds: float, queue: int,
            routes: list[str], rounds: int, analyzer: str | None = None, analyzer_requests: int = 32) -> dict:
    """One server process, admitting ``queue`` images of this size at once: the overhead at concurrency 1, every
    route at every level, perf_analyzer if given; the server's peak memory and its exit code on SIGTERM."""
    requests = calls(model, rgb)
    queue_mp = queue * rgb.shape[0] * rgb.shape[1] / 1e6  # the server bounds what it holds in pixels
    with running_server([model], *BATCHING[batching], "--max-queue-mp", f"{queue_mp:.4f}") as server:
        cost = overhead(server.url, model, rgb, rounds)
        rows = [level(server.url, requests[route], users, seconds) for route in routes for users in levels]
        perf = [perf_analyzer(analyzer, server.url, triton_model_name(model), rgb.shape[:2], users,
                              max(analyzer_requests, users)) for users in levels] if analyzer else []
        peak = server.peak_rss_mib()
        exit_code = server.stop()
    return {"model": model.name, "precision": read_metadata(model).get("precision"), "batching": batching,
            "flags": " ".join(BATCHING[batching]), "peak_rss_mib": round(peak, 1), "exit_code": exit_code,
            "overhead": cost, "rows": rows, "perf_analyzer": perf}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _other(codes: dict[str, int]) -> str:
    """Answers other than 200 and 503 by code ("error": no answer at all)."""
    return ", ".join(f"{code}: {n}" for code, n in codes.items() if code not in ("200", "503")) or "0"


def lost(report: dict) -> list[str]:
    """Every row or server that lost or miscounted a request, named."""
    runs = report["runs"]
    return [f"{run['model']} batching {run['batching']} {row['route']} c={row['concurrency']}"
            for run in runs for row in run["rows"] if not (row["only_200_503"] and row["metrics_agree"])] + [
            f"{run['model']} batching {run['batching']} exited {run['exit_code']}" for run in runs if run["exit_code"]]


def markdown(report: dict) -> str:
    runs = report["runs"]
    lines = [f"# `stylecast serve` under load ({report['size']}x{report['size']}, Locust)", "",
             f"Machine: {report['machine']}. {report['date']}. {report['note']}", "",
             f"Locust {report['locust']} users post back to back for {report['seconds']:g} s at each level, then end "
             "after the request they have in flight; after a 503 a user waits the Retry-After it was given. The server "
             f"admits {report['queue']} images at once. Routes: "
             + "; ".join(f"`{k}` {v}" for k, v in ROUTES.items() if k in report["routes"]) + ". "
             "`ok`/`503`/`other` are Locust's counts (`error`: no answer); `metrics agree` means the server's /metrics "
             "counted the same. Latencies are of the 200s.", "",
             "| model | batching | route | users | ok | 503 | other | img/s | p50 ms | p95 ms | p99 ms | only 200/503 | "
             "metrics agree | server peak RSS |", "|---|---|---|---:|---:|---:|---|---:|---:|---:|---:|---|---|---:|"]
    for run in runs:
        for row in run["rows"]:
            lines.append(f"| {run['model']} | {run['batching']} | {row['route']} | {row['concurrency']} | {row['ok']} | "
                         f"{row['busy_503']} | {_other(row['client_codes'])} | {row['throughput_per_s']} | "
                         f"{row['p50_ms']} | {row['p95_ms']} | {row['p99_ms']} | "
                         f"{'yes' if row['only_200_503'] else 'NO'} | {'yes' if row['metrics_agree'] else 'NO'} | "
                         f"{run['peak_rss_mib']} MiB |")
    lines += ["", f"Batching on: `{' '.join(BATCHING['on'])}`; off: `{' '.join(BATCHING['off'])}`. Every server exited "
              f"{'0 on SIGTERM' if all(r['exit_code'] == 0 for r in runs) else 'NON-ZERO'}.", "",
              "## The server's overhead", "",
              f"One client, {report['size']}x{report['size']}: the round trip against the same work done in the "
              "benchmark's process: for `v1` the JPEG decoded, `Stylizer(model)(rgb)` and the answer encoded as the "
              f"server encodes it; for `v2` `Stylizer.forward`. {report['overhead_rounds']} interleaved "
              f"rounds; medians; the ratio is the median of each round's server/direct ratio (target <= {TARGET:.2f}).",
              "", "| model | batching | route | server ms | direct ms | ratio | within target |",
              "|---|---|---|---:|---:|---:|---|"]
    for run in runs:
        for route, cost in run["overhead"].items():
            lines.append(f"| {run['model']} | {run['batching']} | {route} | {cost['server_ms']} | {cost['direct_ms']} | "
                         f"{cost['ratio']:.3f} | {'yes' if cost['ratio'] <= TARGET else 'NO'} |")
    if report.get("perf_analyzer"):
        lines += ["", "## Triton's perf_analyzer", "",
                  f"{report['perf_analyzer']}, `-i http`, binary tensors, `--shape image:3,{report['size']},"
                  f"{report['size']}`, `--request-count` max({report['perf_requests']}, concurrency), one "
                  "concurrency per call. It stops at its first error (a 503 from a full queue is one).", "",
                  "| model | batching | concurrency | infer/s | p50 ms | p95 ms | p99 ms |",
                  "|---|---|---:|---:|---:|---:|---:|"]
        for run in runs:
            for row in run["perf_analyzer"]:
                figures = (f"{row['infer_per_s']} | {row['p50_ms']} | {row['p95_ms']} | {row['p99_ms']}"
                           if "error" not in row else f"stopped: {row['error']} | | |")
                lines.append(f"| {run['model']} | {run['batching']} | {row['concurrency']} | {figures} |")
    lines += ["", f"![throughput and p99 latency against users]({Path(report['plot']).name})", ""]
    return "\n".join(lines)


def plot(report: dict, dest: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4), dpi=90)
    for index, run in enumerate(report["runs"]):
        for route in report["routes"]:
            rows = [row for row in run["rows"] if row["route"] == route]
            # One colour per server run, one line style per route.
            style = {"color": f"C{index}", "linestyle": "-" if route == "v1" else "--", "marker": "o",
                     "label": f"{run['precision']}, batching {run['batching']}, {route}"}
            levels = [row["concurrency"] for row in rows]
            left.plot(levels, [row["throughput_per_s"] for row in rows], **style)
            right.plot(levels, [row["p99_ms"] or 0 for row in rows], **style)
    for axis, title in ((left, "throughput (200s per second)"), (right, "p99 latency of 200s (ms)")):
        axis.set_xscale("log", base=2)
        axis.set_xlabel("concurrent users")
        axis.set_title(title, fontsize=10)
        axis.grid(alpha=0.3)
    left.legend(fontsize=7)
    fig.tight_layout()
    atomic_write(dest, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, action="append", required=True)
    parser.add_argument("--photo", type=Path, default=Path("benchmarks/photos/chelsea.jpg"))
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--levels", default="1,4,16,64", help="numbers of concurrent users")
    parser.add_argument("--seconds", type=float, default=30.0, help="how long each level's users post")
    parser.add_argument("--routes", default="v1,v2", help=f"of {', '.join(ROUTES)}")
    parser.add_argument("--queue", type=int, default=32, help="images the server admits at once (--max-queue-mp)")
    parser.add_argument("--overhead-rounds", type=int, default=15, help="interleaved rounds of the overhead timing")
    parser.add_argument("--perf-analyzer", help="Triton's perf_analyzer binary: measure the v2 route with it too")
    parser.add_argument("--perf-requests", type=int, default=32, help="perf_analyzer's --request-count per level")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/serve-load"))
    parser.add_argument("--note", default="", help="e.g. that the machine was shared while it ran")
    args = parser.parse_args(argv)
    routes = args.routes.split(",")
    if not set(routes) <= set(ROUTES):
        parser.error(f"--routes {args.routes}: each must be one of {', '.join(ROUTES)}")
    try:
        analyzer = version(args.perf_analyzer) if args.perf_analyzer else None
    except StylecastError as exc:
        print(exc, file=sys.stderr)
        return 2
    rgb = fit(load_image(args.photo).rgb, args.size, args.size)
    levels = [int(level) for level in args.levels.split(",")]
    runs = [measure(model, batching, rgb, levels, args.seconds, args.queue, routes, args.overhead_rounds,
                    args.perf_analyzer, args.perf_requests)
            for model in args.model for batching in BATCHING]
    report = {"machine": describe_class(fingerprint()), "date": datetime.date.today().isoformat(),
              "size": args.size, "seconds": args.seconds, "routes": routes, "queue": args.queue, "note": args.note,
              "locust": package_version("locust"), "overhead_rounds": args.overhead_rounds,
              "perf_analyzer": analyzer, "perf_requests": args.perf_requests,
              "plot": str(args.out.with_suffix(".png")), "runs": runs}
    plot(report, args.out.with_suffix(".png"))
    write_results(args.out, report, markdown(report))
    print(markdown(report))
    slow = [f"{run['model']} batching {run['batching']} {route} {cost['ratio']:.3f}"
            for run in runs for route, cost in run["overhead"].items() if cost["ratio"] > TARGET]
    if slow:
        print(f"server overhead above {TARGET:.2f}: {'; '.join(slow)}", file=sys.stderr)
    bad = lost(report)
    if bad:
        print(f"lost or miscounted requests: {'; '.join(bad)}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
