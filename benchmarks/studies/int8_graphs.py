"""Do the backends that run ONNX files want different int8 graphs? The model's int8 QDQ graph as the export makes
it (the image-writing last conv kept fp32) against the same graph with the last conv quantized too, both from one
calibration, each timed on every backend of the format table that runs ONNX files in one interleaved cell with the
PyTorch eager fp32 model, and each checked for parity against it on the parity photos.

    python -m stylecast.benchmarks.studies.int8_graphs --model models/wave.safetensors --calibration-images ../shared/photos
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import onnx
import torch

from stylecast.benchmarks.discover import exported
from stylecast.benchmarks.latency import key, measure, onnx_labels
from stylecast.benchmarks.report import write_results
from stylecast.benchmarks.suite import Resolution
from stylecast.export import parity, to_int8, to_onnx
from stylecast.runtime.artifacts import sha256_file
from stylecast.runtime.backends import load_backend
from stylecast.runtime.errors import StylecastError
from stylecast.runtime.formats import BACKENDS, FILE_KINDS, ONNX, BackendOptions
from stylecast.runtime.machine import fingerprint, usable_cores
from stylecast.train.checkpoint import LoadedModel, load_model

METHOD = "percentile"
GRAPHS = ("last conv fp32 (as exported)", "last conv int8")


def build_graphs(loaded: LoadedModel, shipped_int8: Path, calibration: list[Path], folder: Path) -> dict[str, Path]:
    """Both graphs from one fp32 export and one calibration (ORT's cache), so only the last conv differs."""
    fp32 = folder / "model.fp32.onnx"
    to_onnx.export_fp32(loaded, fp32)
    keep = to_int8.fp32_conv_names(shipped_int8)
    convs = to_int8.conv_names(fp32)
    if not keep or keep[-1] != convs[-1]:
        raise StylecastError(f"{shipped_int8}: its last conv is already int8; nothing to compare")
    graphs = {}
    for name, kept in zip(GRAPHS, (keep, keep[:-1]), strict=True):
        raw, dest = folder / f"{len(graphs)}.raw.onnx", folder / f"{len(graphs)}.int8.onnx"
        to_int8.quantize_int8(fp32, raw, calibration, (256, 256), METHOD, kept, folder / "calibration.json")
        model = onnx.load(str(raw))
        to_onnx.set_metadata(model, {**to_onnx.export_metadata(loaded, "int8"), "conversion": f"int8-graphs: {name}"})
        to_onnx.save_onnx(model, dest)
        graphs[name] = dest
    return graphs


def parity_db(loaded: LoadedModel, graphs: dict[str, Path], photos: Path, threads: int) -> dict[str, dict[str, float]]:
    """Worst PSNR against PyTorch fp32 over the parity photos and sizes, per graph and engine."""
    reference = parity.Reference(loaded.model, parity.parity_images(photos))
    out: dict[str, dict[str, float]] = {name: {} for name in graphs}
    for name, path in graphs.items():
        for backend in FILE_KINDS[ONNX].backends:
            with load_backend(path, BackendOptions(backend=backend, threads=threads)) as opened:
                out[name][BACKENDS[backend].label] = round(min(r.psnr_min for r in parity.measure(reference, opened)), 2)
    return out


def markdown(record: dict) -> str:
    fp = record["machine"]
    default, *others = labels = onnx_labels()
    lines = [f"# {record['model']}: which int8 graph each engine wants ({record['created'][:10]})", "",
             f"{fp['cpu']} ({', '.join(fp['features']) or 'no AVX2'}), {record['threads']} thread(s), batch 1. Both "
             f"graphs: {record['fp32_leading']} leading convs fp32 as in the shipped int8 export, {METHOD} calibration "
             f"on {record['calibration_photos']} photos at 256². One interleaved cell per resolution with the "
             "PyTorch eager fp32 model; ms = median (min); PSNR = worst over the parity photos against PyTorch fp32.",
             "Regenerate: `make int8-graphs`, alone on the machine.", "",
             "| res | graph | " + " | ".join(f"{label} ms" for label in labels)
             + "".join(f" | {other} / {default}" for other in others) + " | "
             + " | ".join(f"PSNR {label}" for label in labels) + " |",
             "|---|---|" + "---|" * (2 * len(labels) + len(others))]
    for res, cell in record["latency"].items():
        for name in GRAPHS:
            timed = {label: cell[key(name, label, "int8")] for label in labels}
            psnr = record["parity_db"][name]
            lines.append(f"| {res} | {name} | "
                         + " | ".join(f"{t['p50_ms']:.0f} ({t['min_ms']:.0f})" for t in timed.values())
                         + "".join(f" | {timed[default]['p50_ms'] / timed[o]['p50_ms']:.2f}x" for o in others) + " | "
                         + " | ".join(f"{psnr[label]:.1f} dB" for label in labels) + " |")
    lines.append("")
    for res, cell in record["latency"].items():
        best = {label: min(cell[key(name, label, "int8")]["p50_ms"] for name in GRAPHS) for label in labels}
        lines.append(f"- {res}: each engine on its faster graph: "
                     + ", ".join(f"{label} {ms:.0f} ms" for label, ms in best.items())
                     + "".join(f", {default} / {o} {best[default] / best[o]:.2f}x" for o in others) + ".")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=Path("models/wave.safetensors"))
    parser.add_argument("--artifacts", type=Path, default=Path("artifacts"))
    parser.add_argument("--calibration-images", type=Path, required=True)
    parser.add_argument("--photos", type=Path, default=Path("benchmarks/photos"))
    parser.add_argument("--resolution", action="append", help="512, 1080p or WxH; repeat (default 512)")
    parser.add_argument("--threads", type=int, default=usable_cores())
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/int8-graphs"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        loaded, shipped = load_model(args.model), exported(args.model, args.artifacts, "int8")
        held_out = {sha256_file(p) for p in parity.parity_files(args.photos)}
        calibration = to_int8.calibration_files(args.calibration_images, 16, held_out)
        with tempfile.TemporaryDirectory(prefix="stylecast-int8-graphs-") as scratch:
            graphs = build_graphs(loaded, shipped, calibration, Path(scratch))
            photo = parity.parity_images(args.photos, limit=1)[0]
            latency = {(res := Resolution.parse(text)).label: measure(loaded, graphs, res, photo, args.threads)
                       for text in args.resolution or ["512"]}
            psnr = parity_db(loaded, graphs, args.photos, args.threads)
    except StylecastError as exc:
        sys.exit(f"error: {exc}")
    record = {"model": args.model.stem, "model_sha256": sha256_file(args.model), "machine": fingerprint(),
              "threads": args.threads, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "fp32_leading": len(to_int8.fp32_conv_names(shipped)) - 1, "calibration_photos": len(calibration),
              "latency": latency, "parity_db": psnr}
    text = markdown(record)
    write_results(args.out, record, text)
    print(text + f"wrote {args.out}.md and .json")


if __name__ == "__main__":
    main()
