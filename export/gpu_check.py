"""`make gpu-check`: one acceptance run of everything only a GPU can prove, ready for the day one is lent.

Runs within a time budget (default 8 minutes) and never stops at a failing step: the `gpu`-marked tests, the
bench's CUDA cells (torch eager fp32/fp16/bf16, compile, CUDA graphs; CUDA-event timing), the TensorRT backend's
cuda-python upload/download path, ONNX Runtime's CUDA and TensorRT EPs where installed, fp16/int8 engine builds
with parity against ONNX Runtime on CPU where `tensorrt` imports, and a few hundred training steps on CUDA.
Writes ``gpu-check.json`` and ``gpu-check.md``. Without a CUDA device it prints one line and exits 77
(automake's "skipped"), so a CPU machine can run it anywhere.

Needs only torch (CUDA), numpy, Pillow, onnx and onnxruntime besides the project, installed with
``pip install --no-deps --no-build-isolation -e .`` (see the docs, "TensorRT and Jetson").
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from stylecast.runtime.images import atomic_write

SKIPPED = 77
PHOTOS = Path("benchmarks/photos")
TEACHER = Path("models/wave.safetensors")
EXPORTS = Path("artifacts/wave")


@dataclass
class Step:
    name: str
    status: str = "not run"  # passed, failed, skipped, not run (the budget ran out)
    seconds: float = 0.0
    summary: str = ""
    details: dict = field(default_factory=dict)


@dataclass
class Context:
    out: Path
    deadline: float
    scratch: Path

    def seconds_left(self, cap: float) -> float:
        return max(1.0, min(cap, self.deadline - time.monotonic()))


class Skip(Exception):  # noqa: N818 - a step's outcome, not an error
    """A step that cannot run here, with the reason the report gives."""


def cuda_missing() -> str | None:
    """Why this machine cannot run the check, or None when torch sees a CUDA device."""
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    if not torch.cuda.is_available():
        return f"no CUDA device (torch {torch.__version__}, torch.cuda.is_available() is False)"
    return None


def _cli(*args: str, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stylecast.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def gpu_tests(ctx: Context) -> tuple[str, dict]:
    result = subprocess.run([sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", "tests"],
                            capture_output=True, text=True, timeout=ctx.seconds_left(180))
    (ctx.out / "gpu-tests.log").write_text(result.stdout + result.stderr)
    if result.returncode not in (0, 5):  # 5: none collected
        raise RuntimeError(f"pytest -m gpu: {_last_line(result.stdout)} (gpu-tests.log)")
    return _last_line(result.stdout), {"returncode": result.returncode}


def bench_cuda(ctx: Context) -> tuple[str, dict]:
    result = _cli("bench", "--device", "cuda", "--models", str(TEACHER), "--resolution", "512", "--resolution",
                  "1080p", "--out", str(ctx.out), "--name", "gpu-check-bench", "--budget", "10",
                  timeout=ctx.seconds_left(240))
    (ctx.out / "gpu-check-bench.log").write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        raise RuntimeError(f"stylecast bench --device cuda: {_last_line(result.stderr)} (gpu-check-bench.log)")
    rows = json.loads((ctx.out / "gpu-check-bench.json").read_text()).get("rows", [])
    return f"{len(rows)} rows (gpu-check-bench.md)", {"rows": len(rows)}


def cuda_python_io(ctx: Context) -> tuple[str, dict]:
    """The TensorRT backend's copies without TensorRT: pinned host -> device -> pinned host, bit for bit, on
    another thread than the one that opened the device, bound to it as serve's inference thread is (CUDA contexts
    are per thread)."""
    from concurrent.futures import ThreadPoolExecutor

    from stylecast.runtime.backends.cuda_device import open_device

    device = open_device()

    def round_trip() -> tuple[bool, float]:
        device.bind_thread()
        try:
            count = 3 * 1080 * 1920
            source = device.pinned(count)
            source[:] = np.random.default_rng(0).standard_normal(count, dtype=np.float32)
            back = device.pinned(count)
            pointer = device.malloc(count * 4)
            start = time.perf_counter()
            device.to_device(pointer, source)
            device.to_host(back, pointer)
            device.synchronize()
            elapsed_ms = (time.perf_counter() - start) * 1e3
            same = bool(np.array_equal(source, back))
            device.free(pointer)
            device.free(source.ctypes.data)
            device.free(back.ctypes.data)
            return same, elapsed_ms
        finally:
            device.release_thread()

    try:
        with ThreadPoolExecutor(1) as worker:
            same, elapsed_ms = worker.submit(round_trip).result()
        name, capability = device.describe()
    finally:
        device.close()
    if not same:
        raise RuntimeError("device round trip changed the data")
    return (f"{type(device).__name__}: 1080p round trip exact on a bound worker thread, {elapsed_ms:.2f} ms; "
            f"{name} sm {capability}",
            {"backend": type(device).__name__, "gpu": name, "compute_capability": capability,
             "round_trip_ms": round(elapsed_ms, 3), "thread": "worker"})


def _parity_batches() -> list[np.ndarray]:
    from stylecast.export.parity import parity_images
    from stylecast.runtime.images import fit

    return [fit(rgb, 512, 512).transpose(2, 0, 1)[None].astype(np.float32) for rgb in parity_images(PHOTOS)]


def _worst_psnr(reference: Callable[[np.ndarray], np.ndarray], test: Callable[[np.ndarray], np.ndarray]) -> float:
    """The project's one comparator over the parity photos: the worst PSNR of ``test`` against ``reference``."""
    from stylecast.runtime.metrics import Comparison

    compared = Comparison()
    for batch in _parity_batches():
        compared.extend(reference(batch), test(batch))
    return compared.psnr_min


def _exports() -> dict[str, Path]:
    found = {p: EXPORTS / f"wave.{p}.onnx" for p in ("fp32", "fp16", "int8")}
    missing = [str(path) for path in found.values() if not path.is_file()]
    if missing:
        raise Skip(f"{', '.join(missing)} missing: run `make export` here and carry artifacts/wave")
    return found


def ort_gpu_providers(ctx: Context) -> tuple[str, dict]:
    import onnxruntime as ort

    from stylecast.runtime.backends.onnxruntime import OnnxRuntimeBackend
    from stylecast.runtime.formats import PRECISIONS

    wanted = [p for p in ("CUDAExecutionProvider", "TensorrtExecutionProvider") if p in ort.get_available_providers()]
    if not wanted:
        raise Skip(f"onnxruntime {ort.__version__} has no CUDA/TensorRT EP (install onnxruntime-gpu)")
    results = {}
    for precision, path in _exports().items():
        cpu = OnnxRuntimeBackend(path, providers=["CPUExecutionProvider"])
        for provider in wanted:
            gpu = OnnxRuntimeBackend(path, providers=[provider])
            results[f"{provider}/{precision}"] = round(_worst_psnr(cpu.run, gpu.run), 2)
            floor = PRECISIONS[precision].psnr_floor_db
            if results[f"{provider}/{precision}"] < floor:
                raise RuntimeError(f"{provider} {precision}: {results[f'{provider}/{precision}']} dB vs ORT CPU, "
                                   f"below the {floor} dB floor")
    return ", ".join(f"{k} {v} dB" for k, v in results.items()), {"psnr_vs_ort_cpu_db": results}


def tensorrt_engines(ctx: Context) -> tuple[str, dict]:
    try:
        import tensorrt as trt
    except ImportError as error:
        raise Skip("tensorrt does not import (pip install 'stylecast[gpu]', or JetPack's)") from error
    from stylecast.export.tensorrt_build import build_engine
    from stylecast.runtime.artifacts import read_metadata
    from stylecast.runtime.backends.cuda_device import open_device
    from stylecast.runtime.backends.onnxruntime import OnnxRuntimeBackend
    from stylecast.runtime.backends.tensorrt import ENGINE_PROFILE, Profile, Target, TensorRTBackend
    from stylecast.runtime.formats import PRECISIONS

    device = open_device()
    name, capability = device.describe()
    device.close()
    target = Target(trt.__version__, name, capability)
    profile = Profile.parse(ENGINE_PROFILE["min"], ENGINE_PROFILE["opt"], ENGINE_PROFILE["max"])
    results = {}
    for precision in ("fp16", "int8"):
        path = _exports()[precision]
        engine = build_engine(path, read_metadata(path), ctx.scratch, profile, 2048, ctx.scratch / "timing.cache",
                              target)
        backend = TensorRTBackend(engine)
        cpu = OnnxRuntimeBackend(path, providers=["CPUExecutionProvider"])
        results[precision] = round(_worst_psnr(cpu.run, backend.run), 2)
        backend.close()
        if results[precision] < PRECISIONS[precision].psnr_floor_db:
            raise RuntimeError(f"TensorRT {precision}: {results[precision]} dB vs ORT CPU, below the "
                               f"{PRECISIONS[precision].psnr_floor_db} dB floor")
    return (f"TensorRT {trt.__version__}: " + ", ".join(f"{k} {v} dB vs ORT CPU" for k, v in results.items()),
            {"tensorrt": trt.__version__, "psnr_vs_ort_cpu_db": results})


def training_steps(ctx: Context) -> tuple[str, dict]:
    from stylecast.train.presets import resolve
    from stylecast.train.vgg import save_random_loss_net
    from stylecast.train.weights import weights_path

    weights = weights_path("vgg16")
    loss_net = "vgg16 (ImageNet)"
    if not weights.is_file():  # the real weights are 59 MB: past what a device call carries with the repo
        weights = save_random_loss_net(ctx.scratch / "vgg16-random.safetensors")
        loss_net = "random VGG16 (real weights not on this machine): times the step, not the learning"
    # The recipe `make train` uses on a GPU: styles/wave.toml with its [cuda] table (compile included).
    recipe = resolve("wave", Path("styles"), {}, cuda=True)
    steps = 300
    result = _cli("train", "--style", "wave", "--data", str(PHOTOS), "--steps", str(steps), "--device", "cuda",
                  "--loss-net-weights", str(weights), "--out", str(ctx.scratch / "wave-gpu.safetensors"),
                  "--run-dir", str(ctx.scratch / "run"), "--checkpoint-every", str(steps), "--log-every", "50",
                  timeout=ctx.seconds_left(240))
    (ctx.out / "gpu-train.log").write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        raise RuntimeError(f"stylecast train --device cuda: {_last_line(result.stderr)} (gpu-train.log)")
    shape = f"batch {recipe['batch']}, {recipe['crop']}², compile {recipe['compile']}"
    return (f"{steps} steps of styles/wave.toml's [cuda] recipe ({shape}); loss net {loss_net}",
            {"steps": steps, "loss_net": loss_net, "recipe": {k: recipe[k] for k in ("batch", "crop", "compile")}})


STEPS: list[Callable[[Context], tuple[str, dict]]] = [
    cuda_python_io, gpu_tests, ort_gpu_providers, tensorrt_engines, training_steps, bench_cuda,
]


def run_step(step: Callable[[Context], tuple[str, dict]], ctx: Context) -> Step:
    record = Step(step.__name__)
    if time.monotonic() >= ctx.deadline:
        record.summary = "the time budget ran out before this step"
        return record
    start = time.monotonic()
    try:
        record.summary, record.details = step(ctx)
        record.status = "passed"
    except Skip as reason:
        record.status, record.summary = "skipped", str(reason)
    except Exception as error:  # noqa: BLE001 - the check reports every step, whichever fails
        record.status, record.summary = "failed", f"{type(error).__name__}: {error}"
        (ctx.out / f"{step.__name__}.traceback.txt").write_text(traceback.format_exc())
    record.seconds = round(time.monotonic() - start, 1)
    return record


def render(report: dict) -> str:
    lines = [f"# GPU acceptance run ({report['created']})", "", f"Machine: {report['machine']}", "",
             "| step | result | seconds | summary |", "|---|---|---|---|"]
    lines += [f"| {s['name']} | {s['status']} | {s['seconds']} | {s['summary']} |" for s in report["steps"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gpu-check", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/gpu-check"))
    parser.add_argument("--budget-s", type=float, default=480.0, help="stop starting steps after this many seconds")
    args = parser.parse_args(argv)
    reason = cuda_missing()
    if reason:
        print(f"gpu-check: skipped: {reason}; run `make gpu-check` on a machine with an NVIDIA GPU")
        return SKIPPED
    import torch

    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="stylecast-gpu-check-") as scratch:
        ctx = Context(args.out, time.monotonic() + args.budget_s, Path(scratch))
        steps = []
        for step in STEPS:
            steps.append(run_step(step, ctx))
            print(f"gpu-check: {steps[-1].name}: {steps[-1].status} ({steps[-1].seconds} s) {steps[-1].summary}",
                  flush=True)
    report = {"created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "machine": f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA {torch.version.cuda}",
              "steps": [asdict(s) for s in steps]}
    atomic_write(args.out / "gpu-check.json", lambda tmp: tmp.write_text(json.dumps(report, indent=2) + "\n"))
    atomic_write(args.out / "gpu-check.md", lambda tmp: tmp.write_text(render(report)))
    print(f"gpu-check: report in {args.out / 'gpu-check.md'}")
    return 1 if any(s.status == "failed" for s in steps) else 0


if __name__ == "__main__":
    sys.exit(main())
