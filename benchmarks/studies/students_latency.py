"""The deployment-student search's first half: latency on the deployed int8 engines, before any training.

Each candidate of ``students.CANDIDATES`` is built at random init (latency does not depend on the weights),
exported to fp32 and int8 QDQ ONNX as the shipped models are (4 leading convs and the last kept fp32, as the wave
export chooses), and timed on OpenVINO int8 and ONNX Runtime int8 in the same interleaved rounds as the
teacher's eager fp32 at each resolution. Distil the promising ones with `stylecast compress --student NAME`.

    python -m stylecast.benchmarks.studies.students_latency --teacher models/wave.safetensors
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import onnx
import torch

from stylecast.benchmarks.openvino_runner import OpenVinoRunner
from stylecast.benchmarks.ort_runner import OrtRunner
from stylecast.benchmarks.runner import Runner
from stylecast.benchmarks.suite import Resolution, paired_speedup
from stylecast.benchmarks.timing import Policy, run_cell
from stylecast.benchmarks.torch_runner import BASELINE, MODES, TorchRunner
from stylecast.compress.prune import gflops
from stylecast.compress.students import CANDIDATES
from stylecast.export import to_int8, to_onnx
from stylecast.export.parity import parity_files, parity_images
from stylecast.runtime.images import atomic_write, fit
from stylecast.runtime.machine import fingerprint, usable_cores
from stylecast.train.checkpoint import LoadedModel, load_model, save_model
from stylecast.train.model import ArchConfig, TransformerNet, count_parameters

POLICY = Policy(warmup_calls=2, warmup_s=0.5, min_rounds=3, max_rounds=7, budget_s=60.0)
FP32_LEADING = 4  # leading convs left fp32 in int8, as the wave export's search chose (report.json); the last one always is
INT8_ENGINES = ("OpenVINO", "ONNX Runtime")


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


def int8_runners(name: str, path: Path, threads: int) -> list[Runner]:
    runners: list[Runner] = [OpenVinoRunner(path, "int8", threads),
                             OrtRunner(path, "int8", "CPUExecutionProvider", threads)]
    for runner in runners:
        runner.model = name
    return runners


def measure(teacher: LoadedModel, int8_files: dict[str, Path], resolution: Resolution, photo: np.ndarray,
            threads: int) -> dict[str, dict]:
    """One interleaved cell: the teacher's eager fp32 and every candidate's int8 engines; ms and paired speedups."""
    eager = TorchRunner(teacher.model, MODES[BASELINE], torch.device("cpu"))
    eager.model = "teacher"
    runners = [eager] + [r for name, path in int8_files.items() for r in int8_runners(name, path, threads)]
    for runner in runners:
        runner.load()
    batch = fit(photo, resolution.height, resolution.width).transpose(2, 0, 1)[None].astype(np.float32)
    timings = run_cell(runners, [batch], POLICY, lambda *_: None)
    for runner in runners:
        runner.close()
    base = [s.total_ms for s in timings[eager.key].samples]
    out = {}
    for runner in runners:
        timed = timings[runner.key]
        own = [s.total_ms for s in timed.samples]
        out[runner.key] = ({"error": timed.error} if timed.error or not own else
                           {"p50_ms": float(np.median(own)), "min_ms": min(own), "speedup": paired_speedup(base, own)})
    return out


def table(teacher: LoadedModel, specs: dict[str, str], results: dict[str, dict[str, dict]], threads: int) -> str:
    fp = fingerprint()
    lines = [f"# Deployment-student candidates: int8 latency before training ({time.strftime('%Y-%m-%d')})", "",
             f"{fp['cpu']} ({', '.join(fp['features']) or 'no AVX2'}), {threads} thread(s), batch 1. Random-init "
             f"weights (latency does not depend on them); int8 QDQ with {FP32_LEADING} leading convs and the last one "
             "fp32. Per resolution one interleaved cell: the teacher's PyTorch eager fp32 and every candidate's "
             "OpenVINO and ONNX Runtime int8. "
             "ms = median (min); × = median of same-round ratios to the teacher's eager fp32.",
             "Regenerate: `make students-latency`, alone on the machine (2 cores are easily disturbed).", "",
             "| model | arch | params M | GFLOPs 512² | res | eager fp32 ms | OpenVINO int8 ms | × "
             "| ONNX Runtime int8 ms | × |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, spec in {"teacher": teacher.meta["arch"], **specs}.items():
        net = teacher.model if name == "teacher" else TransformerNet(ArchConfig.from_spec(spec))
        for res, cell in results.items():
            eager = cell["teacher/PyTorch/fp32/eager"]
            engines = []
            for fmt in INT8_ENGINES:
                row = cell.get(f"{name}/{fmt}/int8/CPU", {})
                engines += (["–", "–"] if name == "teacher" else [f"error: {row['error']}", "–"] if "error" in row
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
