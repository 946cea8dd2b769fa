"""`make serve-attack`: hostile and heavy clients replayed against `stylecast serve` as it starts by default, and
what each costs the server, beside its target:

- malformed requests (v2 JSON nested 100,000 deep, a 10^400 integer, a 5,000-digit literal, ``parameters`` that is
  not an object, a 5,000-digit or ``²`` Inference-Header-Content-Length, a 16,400 px wide PNG asked back as WebP):
  how many get a 5xx or no answer at all (target 0);
- the slowest ``/v2/health/live`` while a 12 MiB and a 32 MiB JSON v2 infer are handled (target 100 ms): a probe
  that stalls gets a healthy server restarted by its orchestrator;
- a small 256x192 ``/v1/stylize`` after 3 clients uploaded 25 MP photos and gave up after 5 s (target 5 s): work
  nobody waits for must not hold the queue;
- the server's peak RSS under 8 concurrent 2048x2048 uploads (target 2 GiB).

It reports what it measures (a missed target is printed, not assumed away) into benchmarks/results/serve-attack/
attack.{md,json}, naming the machine; it exits 1 only when a malformed request got a 5xx or no answer.

    python -m stylecast.benchmarks.load.attack --model artifacts/wave/wave.fp32.onnx
    python -m stylecast.benchmarks.load.attack --model tiny.fp32.onnx --quick   # small sizes: seconds, not minutes
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime
import json
import socket
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np

from stylecast.benchmarks.load.client import HEADER_LENGTH, burst
from stylecast.benchmarks.load.server import ServerProcess, running_server
from stylecast.benchmarks.report import write_results
from stylecast.runtime.formats import INPUT, triton_model_name
from stylecast.runtime.images import encode_image, fit, load_image
from stylecast.runtime.machine import describe_class, fingerprint

# (figure, target, unit): a figure meets its target when it is at most that.
TARGETS = {"five_xx": (0, ""), "health_p100_ms": (100.0, "ms"), "small_after_abandoned_s": (5.0, "s"),
           "peak_rss_mib": (2048.0, "MiB")}
LABELS = {"five_xx": "malformed requests answered 5xx or not at all",
          "health_p100_ms": "slowest /v2/health/live during the big JSON infers",
          "small_after_abandoned_s": "small /v1/stylize after the abandoned uploads",
          "peak_rss_mib": "server peak RSS under the concurrent uploads"}
SMALL = (256, 192)  # width, height of the request timed after the abandoned uploads
WIDE = (16_400, 16)  # one pixel a side past WebP's 16383, few pixels in all


@dataclasses.dataclass(frozen=True)
class Sizes:
    json_mib: tuple[float, ...]  # the JSON v2 infers handled while health is probed
    abandoned_side: int  # the abandoned uploads are side x side (5000: 25 MP)
    abandoned: int
    give_up_s: float
    upload_side: int  # the concurrent uploads whose peak memory is measured
    uploads: int


FULL = Sizes(json_mib=(12, 32), abandoned_side=5000, abandoned=3, give_up_s=5.0, upload_side=2048, uploads=8)
QUICK = Sizes(json_mib=(1, 2), abandoned_side=1000, abandoned=3, give_up_s=1.0, upload_side=256, uploads=4)


def jpeg(photo: np.ndarray, width: int, height: int) -> bytes:
    return encode_image(fit(photo, height, width), None, "JPEG")


def json_infer(mib: float) -> bytes:
    """A valid JSON v2 infer of about ``mib`` MiB (a square image, values as Triton's client writes them), kept
    under the server's default 32 MiB body limit so it is parsed, not refused."""
    target = min(int(mib * (1 << 20)), (32 << 20) - 4096)
    rng = np.random.default_rng(0)
    per_value = len(json.dumps(rng.uniform(0, 255, 10_000).round(3).tolist(), separators=(",", ":"))) / 10_000
    side = int((target * 0.98 / per_value / 3) ** 0.5)  # 2% to spare for the sample's error and the envelope
    values = rng.uniform(0, 255, 3 * side * side).round(3)
    body = json.dumps({"inputs": [{"name": INPUT, "datatype": "FP32", "shape": [1, 3, side, side],
                                   "data": values.tolist()}]}, separators=(",", ":")).encode()
    return body + b" " * (target - len(body))  # JSON allows trailing whitespace: exactly the size asked


def malformed(model: str, wide_png: bytes) -> dict[str, tuple[str, bytes, dict]]:
    """Each hostile request as (path, body, headers)."""
    infer = f"/v2/models/{model}/infer"
    tensor = {"name": INPUT, "datatype": "FP32", "shape": [1, 3, 16, 16], "data": [0.0] * 768}

    def body(literal: bytes = b"0.0", **fields: object) -> bytes:
        """The tensor above (its first value spelled ``literal``) with ``fields`` added at the top level."""
        text = json.dumps({"inputs": [{**tensor, "data": ["@"] + tensor["data"][1:]}], **fields}).encode()
        return text.replace(b'"@"', literal)

    return {
        "JSON nested 100,000 deep": (infer, b'{"inputs": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", {}),
        "a 10^400 integer": (infer, body(b"1" + b"0" * 400), {}),
        "a 5,000-digit literal": (infer, body(b"9" * 5000), {}),
        "parameters as a string": (infer, body(parameters="binary_data_output"), {}),
        "parameters as a number": (infer, body(parameters=7), {}),
        "parameters as a list": (infer, body(parameters=[1]), {}),
        "5,000-digit Inference-Header-Content-Length": (infer, body(), {HEADER_LENGTH: "9" * 5000}),
        # Latin-1 0xB2 is '²', which str.isdigit() accepts and int() refuses.
        "'²' as Inference-Header-Content-Length": (infer, body(), {HEADER_LENGTH: b"\xb2"}),
        "16,400 px wide PNG asked back as WebP": ("/v1/stylize?format=webp", wide_png, {}),
    }


def replay(server: ServerProcess, cases: dict[str, tuple[str, bytes, dict]]) -> list[dict]:
    """Every case once: its status code (None: no answer) and the first line of what the server said."""
    rows = []
    for case, (path, body, headers) in cases.items():
        try:  # a connection of its own: a case the server hung up on does not make the next look unanswered
            answer = httpx.post(server.url + path, content=body, headers=headers, timeout=120)
            code, said = answer.status_code, answer.text.splitlines()[0][:160] if answer.text else ""
        except httpx.HTTPError as exc:
            code, said = None, f"no answer ({type(exc).__name__})"
        rows.append({"case": case, "code": code, "said": said})
    return rows


def health_during(server: ServerProcess, bodies: dict[str, bytes], model: str) -> dict:
    """Probe /v2/health/live back to back while ``bodies`` are posted as v2 infers at once; what each was
    answered, by label."""
    latencies: list[float] = []
    failed, answers, done = [], {}, threading.Event()

    def probe() -> None:
        with httpx.Client(timeout=60) as client:
            while not done.is_set():
                started = time.perf_counter()
                try:
                    client.get(f"{server.url}/v2/health/live")
                except httpx.HTTPError as exc:
                    failed.append(type(exc).__name__)
                latencies.append(time.perf_counter() - started)
                time.sleep(0.01)

    def post(label: str, body: bytes) -> None:
        try:
            answer = httpx.post(f"{server.url}/v2/models/{model}/infer", content=body, timeout=600,
                                headers={"Content-Type": "application/json"})
            answers[label] = f"{answer.status_code}" + (f" {answer.text[:120]}" if answer.status_code != 200 else "")
        except httpx.HTTPError as exc:
            answers[label] = f"no answer ({type(exc).__name__})"

    prober = threading.Thread(target=probe)
    prober.start()
    posters = [threading.Thread(target=post, args=item) for item in bodies.items()]
    for thread in posters:
        thread.start()
    for thread in posters:
        thread.join()
    done.set()
    prober.join()
    return {"p100_ms": round(max(latencies) * 1000, 1), "p50_ms": round(float(np.median(latencies)) * 1000, 1),
            "slowest_ms": [round(value * 1000, 1) for value in sorted(latencies)[-3:]], "probes": len(latencies),
            "probe_failures": failed, "infer_answers": answers}


def give_up(url: str, body: bytes, seconds: float) -> str:
    """POST ``body`` and wait ``seconds`` in all for an answer, then close the connection as an impatient client
    does; what happened: 'gave up' or the status line it got in time."""
    parts = urlsplit(url)
    deadline = time.monotonic() + seconds
    head = (f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Type: image/jpeg\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    with socket.create_connection((parts.hostname, parts.port), timeout=seconds) as sock:
        try:
            sock.sendall(head + body)
            sock.settimeout(max(0.001, deadline - time.monotonic()))
            first = sock.recv(64)
        except TimeoutError:
            return "gave up"
    return first.split(b"\r\n")[0].decode("latin-1") or "closed by the server"


def small_after_abandoned(server: ServerProcess, big: bytes, small: bytes, sizes: Sizes) -> dict:
    """``sizes.abandoned`` big uploads at once, each given up after ``sizes.give_up_s``; then one small request."""
    url = f"{server.url}/v1/stylize"
    outcomes: list[str] = []
    threads = [threading.Thread(target=lambda: outcomes.append(give_up(url, big, sizes.give_up_s)))
               for _ in range(sizes.abandoned)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    started = time.perf_counter()
    try:
        code = httpx.post(url, content=small, timeout=600).status_code
    except httpx.HTTPError as exc:
        code = f"no answer ({type(exc).__name__})"
    return {"seconds": round(time.perf_counter() - started, 2), "code": code, "abandoned": outcomes}


def concurrent_uploads(server: ServerProcess, body: bytes, uploads: int) -> dict[str, int]:
    """``uploads`` /v1/stylize requests all at once; their status codes counted."""
    result = asyncio.run(burst(f"{server.url}/v1/stylize", body, uploads, uploads, timeout=600))
    return {str(code): count for code, count in sorted(result.codes.items(), key=str)}


def measure(model: Path, photo: Path, sizes: Sizes) -> dict:
    """Each figure; the memory one on a server of its own, so its peak is that phase's alone."""
    rgb = load_image(photo).rgb
    name = triton_model_name(model)
    upload = jpeg(rgb, sizes.upload_side, sizes.upload_side)
    with running_server([model]) as server:
        codes = concurrent_uploads(server, upload, sizes.uploads)
        peak = {"mib": round(server.peak_rss_mib()), "codes": codes}
        peak_exit = server.stop()
    cases = malformed(name, encode_image(fit(rgb, WIDE[1], WIDE[0]), None, "PNG"))
    bodies = {f"{mib:g} MiB": json_infer(mib) for mib in sizes.json_mib}
    big = jpeg(rgb, sizes.abandoned_side, sizes.abandoned_side)
    with running_server([model]) as server:
        rows = replay(server, cases)
        health = health_during(server, bodies, name)
        small = small_after_abandoned(server, big, jpeg(rgb, *SMALL), sizes)
        attack_exit = server.stop()
    figures = {"five_xx": sum(row["code"] is None or row["code"] >= 500 for row in rows),
               "health_p100_ms": health["p100_ms"], "small_after_abandoned_s": small["seconds"],
               "peak_rss_mib": peak["mib"]}
    return {"figures": figures, "met": {key: figures[key] <= TARGETS[key][0] for key in figures},
            "cases": rows, "health": health, "small_after_abandoned": small, "peak_rss": peak,
            "exit_codes": {"memory server": peak_exit, "attack server": attack_exit}}


def markdown(report: dict) -> str:
    sizes = report["sizes"]
    lines = [f"`stylecast serve --model {report['model']}` with its default settings, {report['machine']}, "
             f"{report['date']}{' (quick sizes)' if report['quick'] else ''}.", "",
             "| figure | measured | target | met |", "|---|---:|---:|---|"]
    for key, (target, unit) in TARGETS.items():
        lines.append(f"| {LABELS[key]} | {report['figures'][key]} {unit} | ≤ {target} {unit} | "
                     f"{'yes' if report['met'][key] else '**no**'} |")
    lines += ["", "| malformed request | code | the server said |", "|---|---:|---|"]
    lines += [f"| {row['case']} | {row['code']} | {row['said'].replace('|', '/')} |" for row in report["cases"]]
    health, small, peak = report["health"], report["small_after_abandoned"], report["peak_rss"]
    lines += ["", f"Health: {health['probes']} probes while the JSON infers were handled (answered "
                  f"{health['infer_answers']}); median {health['p50_ms']} ms, slowest {health['slowest_ms']} ms, "
                  f"failures {health['probe_failures']}.",
              f"Abandoned uploads ({sizes['abandoned']} of {sizes['abandoned_side']}x{sizes['abandoned_side']}, "
              f"given up after {sizes['give_up_s']:g} s): {small['abandoned']}; the {SMALL[0]}x{SMALL[1]} request "
              f"after them: {small['code']} in {small['seconds']} s.",
              f"Peak RSS: {sizes['uploads']} concurrent {sizes['upload_side']}x{sizes['upload_side']} uploads "
              f"answered {peak['codes']}. Exit codes after SIGTERM: {report['exit_codes']}.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("artifacts/wave/wave.fp32.onnx"))
    parser.add_argument("--photo", type=Path, default=Path("benchmarks/photos/chelsea.jpg"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/serve-attack"))
    parser.add_argument("--quick", action="store_true", help="small sizes throughout (a check, not the figures)")
    parser.add_argument("--json-mib", help="comma-separated sizes of the JSON infers (default 12,32)")
    parser.add_argument("--abandoned-side", type=int, help="side of the abandoned uploads (default 5000: 25 MP)")
    parser.add_argument("--give-up", type=float, help="seconds the abandoning clients wait (default 5)")
    parser.add_argument("--upload-side", type=int, help="side of the concurrent uploads (default 2048)")
    parser.add_argument("--uploads", type=int, help="how many concurrent uploads (default 8)")
    args = parser.parse_args(argv)
    base = QUICK if args.quick else FULL
    sizes = Sizes(json_mib=tuple(float(mib) for mib in args.json_mib.split(",")) if args.json_mib else base.json_mib,
                  abandoned_side=args.abandoned_side or base.abandoned_side, abandoned=base.abandoned,
                  give_up_s=args.give_up or base.give_up_s, upload_side=args.upload_side or base.upload_side,
                  uploads=args.uploads or base.uploads)
    report = {"model": str(args.model), "machine": describe_class(fingerprint()),
              "date": datetime.date.today().isoformat(), "quick": args.quick, "sizes": dataclasses.asdict(sizes),
              "targets": {key: target for key, (target, _) in TARGETS.items()},
              **measure(args.model, args.photo, sizes)}
    text = markdown(report)
    write_results(args.out / "attack", report, text)
    print(text)
    print(f"wrote {args.out / 'attack.md'} and attack.json")
    return 1 if report["figures"]["five_xx"] else 0


if __name__ == "__main__":
    sys.exit(main())
