"""`make serve-load`: `stylecast serve` under load on this machine, each model with dynamic batching on and
off, at several concurrencies. Every request must be answered 200 or 503 and the server's /metrics must count
exactly what the client saw; a run that loses or miscounts a request fails (exit 1) after writing its report.

    python -m stylecast.benchmarks.load.run --model artifacts/wave/wave.fp32.onnx --model artifacts/wave/wave.int8.onnx
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import sys
from pathlib import Path

from stylecast.benchmarks.load.client import burst, request_counts, scrape
from stylecast.benchmarks.load.server import running_server
from stylecast.benchmarks.report import write_results
from stylecast.runtime.artifacts import read_metadata
from stylecast.runtime.images import atomic_write, encode_image, fit, load_image
from stylecast.runtime.machine import describe_class, fingerprint

# (label, server flags): the same server with Triton-like dynamic batching, and one image per call.
BATCHING = {"on": ("--max-batch", "8", "--batch-window-ms", "5"), "off": ("--max-batch", "1")}
ROUTE = "/v1/stylize"


def measure(model: Path, batching: str, body: bytes, levels: list[int], requests: int, queue: int) -> dict:
    """One server process; every concurrency level in turn; its counts and peak memory."""
    rows = []
    with running_server([model], *BATCHING[batching], "--max-queue", str(queue)) as server:
        for concurrency in levels:
            before = request_counts(scrape(server.url), ROUTE)
            result = asyncio.run(burst(f"{server.url}{ROUTE}", body, max(requests, concurrency), concurrency))
            after = request_counts(scrape(server.url), ROUTE)
            served = {code: after[code] - before[code] for code in after if after[code] != before[code]}
            client = {code: n for code, n in result.codes.items()}
            rows.append({"concurrency": concurrency, "requests": sum(client.values()), "ok": client.get(200, 0),
                         "busy_503": client.get(503, 0), "throughput_per_s": round(result.throughput, 2),
                         "p50_ms": _round(result.percentile_ms(50)), "p99_ms": _round(result.percentile_ms(99)),
                         "client_codes": {str(k): v for k, v in client.items()},
                         "server_codes": {str(k): v for k, v in served.items()},
                         "only_200_503": set(client) <= {200, 503},
                         "metrics_agree": client == served})
        peak = server.peak_rss_mib()
        exit_code = server.stop()
    return {"model": model.name, "precision": read_metadata(model).get("precision"), "batching": batching,
            "flags": " ".join(BATCHING[batching]), "peak_rss_mib": round(peak, 1), "exit_code": exit_code,
            "rows": rows}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def markdown(report: dict) -> str:
    lines = [f"# `stylecast serve` under load ({report['size']}x{report['size']} JPEG, POST {ROUTE})", "",
             f"Machine: {report['machine']}. {report['date']}. {report['note']}", "",
             f"Each level sends max({report['requests']}, concurrency) requests; queue {report['queue']} images. "
             "`ok`/`503` are the client's counts; `metrics agree` means the server's /metrics counted the same.", "",
             "| model | batching | concurrency | ok | 503 | req/s | p50 ms | p99 ms | only 200/503 | metrics agree | "
             "server peak RSS |", "|---|---|---:|---:|---:|---:|---:|---:|---|---|---:|"]
    for run in report["runs"]:
        for row in run["rows"]:
            lines.append(f"| {run['model']} | {run['batching']} | {row['concurrency']} | {row['ok']} | "
                         f"{row['busy_503']} | {row['throughput_per_s']} | {row['p50_ms']} | {row['p99_ms']} | "
                         f"{'yes' if row['only_200_503'] else 'NO'} | {'yes' if row['metrics_agree'] else 'NO'} | "
                         f"{run['peak_rss_mib']} MiB |")
    lines += ["", f"Batching on: `{' '.join(BATCHING['on'])}`; off: `{' '.join(BATCHING['off'])}`. Every server exited "
              f"{'0 on SIGTERM' if all(r['exit_code'] == 0 for r in report['runs']) else 'NON-ZERO'}.", "",
              f"![throughput and p99 latency against concurrency]({Path(report['plot']).name})", ""]
    return "\n".join(lines)


def plot(report: dict, dest: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4), dpi=90)
    for run in report["runs"]:
        label = f"{run['precision']}, batching {run['batching']}"
        levels = [row["concurrency"] for row in run["rows"]]
        left.plot(levels, [row["throughput_per_s"] for row in run["rows"]], marker="o", label=label)
        right.plot(levels, [row["p99_ms"] or 0 for row in run["rows"]], marker="o", label=label)
    for axis, title in ((left, "throughput (200s per second)"), (right, "p99 latency of 200s (ms)")):
        axis.set_xscale("log", base=2)
        axis.set_xlabel("concurrent clients")
        axis.set_title(title, fontsize=10)
        axis.grid(alpha=0.3)
    left.legend(fontsize=8)
    fig.tight_layout()
    atomic_write(dest, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, action="append", required=True)
    parser.add_argument("--photo", type=Path, default=Path("benchmarks/photos/chelsea.jpg"))
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--levels", default="1,4,16,64")
    parser.add_argument("--requests", type=int, default=64, help="requests per level (at least the concurrency)")
    parser.add_argument("--queue", type=int, default=32, help="the server's --max-queue")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/serve-load"))
    parser.add_argument("--note", default="", help="e.g. that the machine was shared while it ran")
    args = parser.parse_args(argv)
    body = encode_image(fit(load_image(args.photo).rgb, args.size, args.size), None, "JPEG")
    levels = [int(level) for level in args.levels.split(",")]
    runs = [measure(model, batching, body, levels, args.requests, args.queue)
            for model in args.model for batching in BATCHING]
    report = {"machine": describe_class(fingerprint()), "date": datetime.date.today().isoformat(),
              "size": args.size, "requests": args.requests, "queue": args.queue, "note": args.note,
              "plot": str(args.out.with_suffix(".png")), "runs": runs}
    plot(report, args.out.with_suffix(".png"))
    write_results(args.out, report, markdown(report))
    bad = [f"{run['model']} batching {run['batching']} c={row['concurrency']}" for run in runs for row in run["rows"]
           if not (row["only_200_503"] and row["metrics_agree"])] + [
           f"{run['model']} batching {run['batching']} exited {run['exit_code']}" for run in runs if run["exit_code"]]
    print(markdown(report))
    if bad:
        print(f"lost or miscounted requests: {'; '.join(bad)}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
