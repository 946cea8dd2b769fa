"""OpenVINO backend: the same exported ONNX files (fp32, fp16, int8 QDQ), compiled for a static shape.

On x86 CPUs OpenVINO runs the QDQ int8 graph with fused int8 kernels, where ONNX Runtime dequantises
around each conv; it also drives Intel GPUs and NPUs. Each image size gets its own compiled model, its batch
left dynamic (static sizes compile to faster kernels than dynamic ones); a few are kept, least recently used first
out.
"""

from __future__ import annotations

import statistics
from collections import OrderedDict
from dataclasses import replace
from pathlib import Path
from types import ModuleType

import numpy as np

from stylecast.runtime.artifacts import onnx_metadata, package_version, require
from stylecast.runtime.backends.base import Backend, Variant, check_inputs
from stylecast.runtime.errors import StylecastError, import_optional
from stylecast.runtime.formats import STYLE, BackendOptions
from stylecast.runtime.machine import class_id, fingerprint
from stylecast.runtime.probes import FASTER_BELOW, cached_probe
from stylecast.runtime.specialize import specialized_bytes
from stylecast.runtime.timing import timed_ms

# Compiled models kept per backend: a photo folder of mixed sizes recompiles less, and memory stays bounded.
SHAPE_CACHE = 4
PROBE_VERSION = 2  # 2: no timing where the plugin has no bf16 kernels
PROBE_SHAPE = (1, 32, 96, 96)  # three 3x3 32->32 convs: the shape of the transform net's outer layers
PROBE_ROUNDS = 5
CPU_PRECISIONS = ("f32", "bf16", "auto")  # the CPU plugin's inference precision: see cpu_precision


def import_openvino() -> ModuleType:
    return import_optional("openvino", "OpenVINO is not installed: pip install 'stylecast[openvino]'")


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


def _probe_model(ov: ModuleType) -> object:
    """A small conv stack built in memory, so the probe needs no file and times the same work on every machine."""
    ops = ov.opset13
    rng = np.random.default_rng(0)
    node = image = ops.parameter(PROBE_SHAPE, np.float32, name="x")
    channels = PROBE_SHAPE[1]
    for _ in range(3):
        weights = ops.constant(rng.standard_normal((channels, channels, 3, 3)).astype(np.float32) * 0.1)
        node = ops.relu(ops.convolution(node, weights, [1, 1], [1, 1], [1, 1], [1, 1]))
    return ov.Model([node], [image], "stylecast-precision-probe")


def _probe_ms(ov: ModuleType, core: object, hint: str, threads: int | None) -> list[float]:
    compiled = core.compile_model(_probe_model(ov), "CPU", compile_config("CPU", threads, hint))
    request = compiled.create_infer_request()
    feed = np.random.default_rng(1).standard_normal(PROBE_SHAPE).astype(np.float32)
    request.infer({0: feed})  # first call: memory set-up
    return [timed_ms(lambda: request.infer({0: feed}))[1] for _ in range(PROBE_ROUNDS)]


def has_bf16_kernels(core: object) -> bool:
    """Whether the CPU plugin runs bf16 natively; without, it runs a bf16 hint as f32."""
    return "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def probe_precision(ov: ModuleType, core: object, threads: int | None) -> dict:
    """f32 vs bf16 inference-precision hint on a small conv stack; bf16 only where measured faster.

    Where the CPU plugin lists no BF16 among its OPTIMIZATION_CAPABILITIES it runs the bf16 hint as f32, so
    there is nothing to measure: timing two identical runs would let noise pick."""
    if not has_bf16_kernels(core):
        return {"hint": "f32", "reason": "OpenVINO runs no bf16 kernels on this CPU (its OPTIMIZATION_CAPABILITIES "
                                         "list no BF16): the bf16 hint would run as f32"}
    try:
        fp32 = statistics.median(_probe_ms(ov, core, "f32", threads))
        bf16 = statistics.median(_probe_ms(ov, core, "bf16", threads))
    except Exception as exc:  # a CPU plugin that refuses the bf16 hint: f32 is the only choice
        return {"hint": "f32", "reason": f"the bf16 hint was refused here ({first_line(exc)})"}
    ratio = bf16 / fp32
    hint = "bf16" if ratio < FASTER_BELOW else "f32"
    return {"hint": hint, "ratio": round(ratio, 3), "reason": f"bf16 ran at {1 / ratio:.2f}x the speed of f32 "
            f"({bf16:.1f} vs {fp32:.1f} ms on a conv probe); used only when faster than {1 / FASTER_BELOW:.2f}x"}


def cpu_precision_hint(ov: ModuleType, core: object, threads: int | None) -> tuple[str, str]:
    """f32 or bf16, whichever a probe cached per machine class, threads and OpenVINO version found faster."""
    key = f"openvino-cpu-{class_id(fingerprint())}-{threads or 'auto'}t-ov{package_version('openvino')}"
    entry, cached = cached_probe(key, PROBE_VERSION, lambda: probe_precision(ov, core, threads), fingerprint)
    return entry["hint"], entry["reason"] + (" (cached probe)" if cached else "")


def cpu_precision(ov: ModuleType, core: object, requested: str, threads: int | None) -> tuple[str, str]:
    """The CPU plugin's inference precision and why. ``f32`` runs the graph at its own precision (fp32, fp16 and
    int8 parts as exported, as ONNX Runtime runs them): left to itself OpenVINO lowers every f32 op to bf16 on CPUs
    with bf16 instructions, which took an fp32 export from 116 dB to 41 dB against PyTorch. ``bf16`` and
    ``auto`` (bf16 where a probe measures it faster) trade that parity for speed, on request only."""
    if requested == "f32":
        return "f32", "the graph's own precision (bf16 only on request: --openvino-precision bf16 or auto)"
    if requested == "auto":
        return cpu_precision_hint(ov, core, threads)
    if requested == "bf16":
        if not has_bf16_kernels(core):
            raise StylecastError("--openvino-precision bf16: OpenVINO runs no bf16 kernels on this CPU (its "
                                 "OPTIMIZATION_CAPABILITIES list no BF16); use f32")
        return "bf16", "requested (--openvino-precision bf16)"
    raise StylecastError(f"--openvino-precision {requested}: choose from {', '.join(CPU_PRECISIONS)}")


def compile_config(device: str, threads: int | None, hint: str | None) -> dict[str, str]:
    """Latency-oriented settings; threads and the precision hint apply to the CPU plugin only."""
    config = {"PERFORMANCE_HINT": "LATENCY"}
    if device == "CPU":
        if threads:
            config["INFERENCE_NUM_THREADS"] = str(threads)
        if hint:
            config["INFERENCE_PRECISION_HINT"] = hint
    return config


class OpenVinoBackend(Backend):
    name = "openvino"
    requires = "openvino"

    def __init__(self, path: Path, device: str = "CPU", threads: int | None = None, precision: str = "f32",
                 graph: bytes | None = None) -> None:
        """``graph``: the serialized graph to run in place of the file's (its style folded in, see ``specialized``);
        the file still gives the metadata."""
        super().__init__(path)
        self._settings = (device, threads, precision)
        ov = import_openvino()
        self._meta = onnx_metadata(self.path)  # checked before OpenVINO parses a foreign file
        require(self._meta, "onnx", path)
        self.core, self.device, self.threads = ov.Core(), device, threads
        if device not in self.core.available_devices and device != "AUTO" and ":" not in device:
            raise StylecastError(f"OpenVINO device {device!r} not available here; available: "
                                 f"{', '.join(self.core.available_devices)}")
        try:
            self.model = self.core.read_model(str(path) if graph is None else graph)
        except Exception as exc:  # OpenVINO raises its own untyped errors for bad files
            raise StylecastError(f"{path}: OpenVINO cannot read this model ({first_line(exc)}); "
                                 "re-export it with `stylecast export`") from exc
        self.inputs = check_inputs(path, [(i.any_name, len(i.partial_shape)) for i in self.model.inputs])
        if device != "CPU" and precision != "f32":
            raise StylecastError(f"--openvino-precision {precision}: sets the CPU's inference precision; the "
                                 f"{device} device runs at its own (drop the option)")
        self.hint, self.hint_reason = cpu_precision(ov, self.core, precision, threads) if device == "CPU" else (None, "")
        self._compiled: OrderedDict[tuple[tuple[int, ...], ...], object] = OrderedDict()

    @classmethod
    def open(cls, path: Path, options: BackendOptions) -> OpenVinoBackend:
        """``--provider`` names OpenVINO's device (CPU by default), ``--openvino-precision`` the CPU's precision."""
        return cls(path, device=options.provider[0] if options.provider else "CPU", threads=options.threads,
                   precision=options.openvino_precision)

    @classmethod
    def variants(cls, path: Path, precision: str, options: BackendOptions) -> list[Variant]:
        """The file at its own precision on the CPU, and (fp32 and int8 files) with the bf16 inference precision
        for its float ops: a row of its own (an fp32 file's is then bf16, judged by the bf16 floor), never passed
        off as the file's own precision."""
        cpu = replace(options, backend=cls.name, provider=["CPU"])
        rows = [Variant("CPU", precision, replace(cpu, openvino_precision="f32"))]
        if precision in ("fp32", "int8"):
            status = None if has_bf16_kernels(import_openvino().Core()) else \
                "skipped: OpenVINO runs no bf16 kernels on this CPU"
            rows.append(Variant("CPU bf16", "bf16" if precision == "fp32" else precision,
                                replace(cpu, openvino_precision="bf16"), status))
        return rows

    @property
    def metadata(self) -> dict[str, str]:
        return self._meta

    def details(self) -> dict[str, str]:
        return {"precision_hint": self.hint, "hint_reason": self.hint_reason} if self.hint else {}

    def specialized(self, style: np.ndarray) -> OpenVinoBackend | None:
        """This file's graph with ``style`` folded into its InstanceNorms, read from memory for the same device,
        threads and precision; None for a graph without a style input. The CPU plugin compiles it as it compiles a
        single-style net: the general graph's per-norm affine, style MatMuls and the layout reorders they need go."""
        if STYLE not in self.inputs:
            return None
        return OpenVinoBackend(self.path, *self._settings, graph=specialized_bytes(self.path, style))

    def close(self) -> None:
        self._compiled.clear()  # the compiled model of every shape

    def request(self, *shapes: tuple[int, ...]) -> object:
        """The infer request compiled for these input ``shapes`` whatever their batch, compiling it (and evicting
        the oldest) when new. The batch stays dynamic: a server's batches of 1 to 8 images of one size share one
        compiled model, where a static batch compiled one per size and evicted the others (a dynamic batch ran
        within 3% of a static one at 1 to 8 images of 512 px, measured on the CPU plugin). Other devices keep
        static shapes (an NPU compiles no dynamic ones)."""
        key = tuple((-1, *shape[1:]) for shape in shapes) if self.device == "CPU" else shapes
        if key in self._compiled:
            self._compiled.move_to_end(key)
            return self._compiled[key]
        model = self.model.clone()
        model.reshape({i: list(shape) for i, shape in enumerate(key)})
        compiled = self.core.compile_model(model, self.device, compile_config(self.device, self.threads, self.hint))
        self._compiled[key] = compiled.create_infer_request()
        if len(self._compiled) > SHAPE_CACHE:
            self._compiled.popitem(last=False)
        return self._compiled[key]

    def run(self, batch: np.ndarray, stats: np.ndarray | None = None,
            style: np.ndarray | None = None) -> np.ndarray:
        feeds = self.feeds(batch, stats, style)
        try:
            request = self.request(*(tuple(a.shape) for a in feeds))
            request.infer(dict(enumerate(feeds)))
            # The request reuses its output buffer on the next call: hand back a copy.
            return np.array(request.get_output_tensor(0).data, dtype=np.float32, copy=True)
        except Exception as exc:  # OpenVINO's errors are untyped; memory exhaustion is the usual one
            raise StylecastError(f"{self.path}: OpenVINO inference failed on a {'x'.join(map(str, batch.shape))} "
                                 f"input ({first_line(exc)}); try --tile 512 or --max-side") from exc

    def describe(self) -> str:
        hint = f", {self.hint}" if self.hint else ""
        return f"openvino {self.device}{hint}"
