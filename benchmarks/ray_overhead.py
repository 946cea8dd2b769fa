"""Ray's overhead: the same photos through local `stylecast stylize` and through `stylize --ray` with 1 and 2 actors,
on the same cores, interleaved.

    python -m stylecast.benchmarks.ray_overhead --model artifacts/wave/wave.fp32.onnx [--photos 200] [--size 512] \
        [--source ../shared/photos] [--cores 2] [--rounds 2]

Each run is the real command in a child process, timed from start to exit (model load included), so the figures
are what a user waits. The Ray runs join one local cluster started here first (its start is reported apart: a
cluster outlives its jobs) and, like the local runs, are pinned to the same ``--cores`` CPUs. The local run uses
``--threads CORES``; Ray runs one actor with ``CORES`` threads, or two with half each. A last Ray run over finished
outputs measures a rerun, which skips them. Writes ``ray.json`` and ``ray.md`` to ``--out``
(benchmarks/results/ray by `make bench-ray`).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import time
from pathlib import Path

from stylecast.benchmarks.media.harness import stylecast
from stylecast.benchmarks.report import write_results
from stylecast.runtime.errors import StylecastError, import_optional
from stylecast.runtime.images import IMAGE_SUFFIXES, fit, load_image, save_image
from stylecast.runtime.machine import describe_class, fingerprint

FALLBACK = Path("benchmarks/photos")  # committed, so a clean clone without ../shared can run it


def make_photos(source: Path, count: int, size: int, folder: Path) -> Path:
    """``count`` photos of ``size`` px squared (centre crops, upscaled where needed) from ``source``, cycled, every
    other pass mirrored so no two are the same; made once and reused."""
    photos = sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not photos:
        raise StylecastError(f"{source}: no photos; pass --source a folder of photos")
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        dest = folder / f"photo-{i:04d}.jpg"
        if not dest.is_file():
            rgb = fit(load_image(photos[i % len(photos)]).rgb, size, size)
            save_image(dest, rgb[:, ::-1] if (i // len(photos)) % 2 else rgb, quality=92)
    for extra in sorted(folder.glob("photo-*.jpg"))[count:]:
        extra.unlink()  # a smaller --photos after a larger one
    return folder


def pin(cores: int) -> list[int]:
    """Run this process and its children (the local runs, the Ray cluster) on the first ``cores`` usable CPUs."""
    usable = sorted(os.sched_getaffinity(0))
    if len(usable) < cores:
        raise StylecastError(f"--cores {cores}: this machine lets us use {len(usable)}; pass --cores {len(usable)}")
    os.sched_setaffinity(0, usable[:cores])
    return usable[:cores]


def markdown(result: dict) -> str:
    lines = [f"# `stylize --ray` against local `stylize` ({result['photos']} photos at {result['size']} px)", "",
             f"Machine: {result['machine']}; pinned to {result['cores']} CPUs. Model: {result['model']}. Photos from "
             f"{result['source']}. Each figure is the median of {result['rounds']} interleaved runs of the command, "
             "start to exit; the Ray runs join a local cluster that was already up "
             f"(it took {result['cluster_start_s']} s to start).", "",
             "| run | seconds | photos/s | time vs local (Ray's overhead) |", "|---|---:|---:|---:|"]
    lines += [f"| {r['run']} | {r['seconds']} | {r['photos_per_s']} | {r['time_vs_local']:+.0%} |"
              for r in result["runs"]]
    two = result["runs"][-1]["seconds"]
    lines += ["", f"A rerun of the 2-actor job over its finished outputs: {result['rerun_s']} s, "
                  f"{result['rerun_s'] / two:.1%} of its first run (every photo skipped: read, hashed and checked "
                  "against its manifest record by the command itself, which found the job finished without starting "
                  "a Ray job)."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="exported .onnx model")
    parser.add_argument("--photos", type=int, default=200, help="how many photos")
    parser.add_argument("--size", type=int, default=512, help="their side in pixels")
    parser.add_argument("--source", type=Path, default=Path("../shared/photos"),
                        help=f"photos to make them from (absent: {FALLBACK})")
    parser.add_argument("--cores", type=int, default=2, help="CPUs every run gets (even, at least 2)")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved runs of each")
    parser.add_argument("--work", type=Path, default=Path("artifacts/bench/ray"), help="photos and outputs")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/ray"))
    args = parser.parse_args()
    if args.cores < 2 or args.cores % 2:
        parser.error("--cores must be even and at least 2: the 2-actor run gives each actor half")
    source = args.source if args.source.is_dir() else FALLBACK
    if source != args.source:
        print(f"{args.source} is not here: making the photos from {FALLBACK}", flush=True)
    photos = make_photos(source, args.photos, args.size, args.work / f"photos-{args.size}")
    pin(args.cores)
    ray = import_optional("ray", "the benchmark needs Ray: pip install 'stylecast[ray]'")
    started = time.perf_counter()
    # The children join by address; Ray's token authentication, on for this local cluster, reaches them through
    # the RAY_AUTH_MODE this sets in the environment they inherit.
    ray.init(num_cpus=args.cores, include_dashboard=False)
    cluster_s = time.perf_counter() - started
    address = ray.get_runtime_context().gcs_address
    half = str(args.cores // 2)
    runs = {"local `stylize`": ["--threads", str(args.cores)],
            "`--ray`, 1 actor": ["--ray-address", address, "--actors", "1", "--threads", str(args.cores)],
            "`--ray`, 2 actors": ["--ray-address", address, "--actors", "2", "--threads", half]}
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    try:
        for round_ in range(args.rounds):
            order = list(runs)[round_ % len(runs):] + list(runs)[:round_ % len(runs)]  # each goes first in turn
            for name in order:
                out = args.work / f"out-{list(runs).index(name)}"
                shutil.rmtree(out, ignore_errors=True)
                took, _, _ = stylecast("stylize", str(photos), "--model", str(args.model), "--out", str(out),
                                       *runs[name])
                seconds[name].append(took)
                print(f"round {round_ + 1}: {name}: {took:.1f} s", flush=True)
        rerun_s, _, _ = stylecast("stylize", str(photos), "--model", str(args.model), "--out", str(args.work / "out-2"),
                                  *runs["`--ray`, 2 actors"])
    finally:
        ray.shutdown()
    local = statistics.median(seconds["local `stylize`"])
    result = {"machine": describe_class(fingerprint()), "cores": args.cores, "model": str(args.model),
              "photos": args.photos, "size": args.size, "source": str(source), "rounds": args.rounds,
              "cluster_start_s": round(cluster_s, 1), "rerun_s": round(rerun_s, 1),
              "runs": [{"run": name, "seconds": round(statistics.median(times), 2),
                        "photos_per_s": round(args.photos / statistics.median(times), 2),
                        "time_vs_local": round(statistics.median(times) / local - 1, 3),
                        "all_seconds": [round(t, 2) for t in times]} for name, times in seconds.items()]}
    write_results(args.out / "ray", result, markdown(result))
    print(markdown(result))
    print(f"wrote {args.out / 'ray.md'}")


if __name__ == "__main__":
    main()
