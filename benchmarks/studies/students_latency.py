"""The deployment-student search's first half: latency on the deployed int8 engines, before any training.

Each candidate of ``students.CANDIDATES`` is built at random init (latency does not depend on the weights),
exported to fp32 and int8 QDQ ONNX as the shipped models are (4 leading convs and the last kept fp32, as the wave
export chooses), and its int8 file timed on every backend of the format table that runs ONNX files, in the same
interleaved rounds as the teacher's eager fp32 at each resolution. Distil the promising ones with
`stylecast compress --student NAME`.

    python -m stylecast.benchmarks.studies.students_latency --teacher models/wave.safetensors
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import onnx
import torch

from stylecast.benchmarks.latency import TEACHER, TEACHER_KEY, key, measure, onnx_labels
from stylecast.benchmarks.suite import Resolution
from stylecast.compress.prune import gflops
from stylecast.compress.students import CANDIDATES
from stylecast.export import to_int8, to_onnx
from stylecast.export.parity import parity_files, parity_images
from stylecast.runtime.images import atomic_write
from stylecast.runtime.machine import fingerprint, usable_cores
from stylecast.train.checkpoint import LoadedModel, load_model, save_model
from stylecast.train.model import ArchConfig, TransformerNet, count_parameters

FP32_LEADING = 4  # leading convs left fp32 in int8, as the wave export's search chose (report.json); the last one always is


def export_candidate(name: str, spec: str, teacher: LoadedModel, folder: Path, photos: list[Path]) -> Path:
    """Random-init checkpoint -> fp32 ONNX -> int8 QDQ ONNX (min-max calibration on ``photos``); the int8 path."""
    torch.manual_seed(0)
    checkpoint = folder / f"{name}.safetensors"
    save_model(checkpoint, TransformerNet(ArchConfig.from_spec(spec)),
               {"style": teacher.meta["style"], "teacher": teacher.path.name, "method": "random-init (latency only)"})
    loaded = load_model(checkpoint)
    fp32, int8 = folder / f"{name}.fp32.onnx", folder / f"{name}.int8.onnx"
    to_onnx.export_fp32(loaded, fp32)
    to_int8.quantize_int8(fp32, folder / f"{name}.int8.raw.onnx", photos, (256, 256), "minmax",
                          to_int8.fp32_convs(to_int8.conv_names(fp32), FP32_LEADING))
    model = onnx.load(str(folder / f"{name}.int8.raw.onnx"))
    to_onnx.set_metadata(model, {**to_onnx.export_metadata(loaded, "int8"), "conversion": "students-latency"})
    to_onnx.save_onnx(model, int8)
    (folder / f"{name}.int8.raw.onnx").unlink()
    return int8


def table(teacher: LoadedModel, specs: dict[str, str], results: dict[str, dict[str, dict]], threads: int) -> str:
    fp = fingerprint()
    labels = onnx_labels()
    lines = [f"# Deployment-student candidates: int8 latency before training ({time.strftime('%Y-%m-%d')})", "",
             f"{fp['cpu']} ({', '.join(fp['features']) or 'no AVX2'}), {threads} thread(s), batch 1. Random-init "
             f"weights (latency does not depend on them); int8 QDQ with {FP32_LEADING} leading convs and the last one "
             "fp32. Per resolution one interleaved cell: the teacher's PyTorch eager fp32 and every candidate's int8 "
             f"on {' and '.join(labels)}. "
             "ms = median (min); × = median of same-round ratios to the teacher's eager fp32.",
             "Regenerate: `make students-latency`, alone on the machine (small CPUs are easily disturbed).", "",
             "| model | arch | params M | GFLOPs 512² | res | eager fp32 ms | "
             + " | ".join(f"{label} int8 ms | ×" for label in labels) + " |",
             "|---|---|---|---|---|---|" + "---|---|" * len(labels)]
    for name, spec in {TEACHER: teacher.meta["arch"], **specs}.items():
        net = teacher.model if name == TEACHER else TransformerNet(ArchConfig.from_spec(spec))
        for res, cell in results.items():
            eager = cell[TEACHER_KEY]
            engines = []
            for label in labels:
                row = cell.get(key(name, label, "int8"), {"error": "not timed"})
                engines += (["–", "–"] if name == TEACHER else [f"error: {row['error']}", "–"] if "error" in row
                            else [f"{row['p50_ms']:.0f} ({row['min_ms']:.0f})", f"{row['speedup']:.2f}x"])
            lines.append(f"| {name} | `{spec}` | {count_parameters(net) / 1e6:.2f} | {gflops(net, 512, 512):.1f} | {res} | "
                         f"{eager['p50_ms']:.0f} ({eager['min_ms']:.0f}) | " + " | ".join(engines) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--teacher", type=Path, default=Path("models/wave.safetensors"))
    parser.add_argument("--photos", type=Path, default=Path("benchmarks/photos"))
    parser.add_argument("--work", type=Path, default=Path("artifacts/students"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/students-latency.md"))
    parser.add_argument("--resolution", action="append", help="512, 1080p or WxH; repeat (default 512 and 1080p)")
    parser.add_argument("--candidate", action="append", help=f"names from {', '.join(CANDIDATES)} (default all)")
    parser.add_argument("--threads", type=int, default=usable_cores())
    args = parser.parse_args(argv)
    unknown = sorted(set(args.candidate or []) - set(CANDIDATES))
    if unknown:
        parser.error(f"unknown candidate(s) {unknown}; choose from {', '.join(CANDIDATES)}")
    torch.set_num_threads(args.threads)
    teacher = load_model(args.teacher)
    specs = {name: CANDIDATES[name] for name in args.candidate or CANDIDATES}
    files = parity_files(args.photos)
    int8 = {}
    for name, spec in specs.items():
        print(f"exporting {name} ({spec})", flush=True)
        int8[name] = export_candidate(name, spec, teacher, args.work, files)
    photo = parity_images(args.photos, limit=1)[0]
    results = {}
    for text in args.resolution or ["512", "1080p"]:
        resolution = Resolution.parse(text)
        print(f"timing {resolution.label}", flush=True)
        results[resolution.label] = measure(teacher, int8, resolution, photo, args.threads)
    text = table(teacher, specs, results, args.threads)
    atomic_write(args.out, lambda tmp: tmp.write_text(text))
    print(text + f"wrote {args.out}")


if __name__ == "__main__":
    main()
