"""The one table of artifact formats, backends and precisions (after Ultralytics' ``export_formats()``).

Export, `stylize`, `serve`, `info`, the bench, the compression pipeline's latency loop and Triton all loop over
these rows, so adding a precision, a file kind or a backend is one row here (a backend also needs its module in
``runtime/backends/``, imported only when a file is opened with it).

Parity floors are against PyTorch eager fp32 on real photos (worst photo). TensorRT needs no column: it
builds every precision strongly typed, taking fp16 tensors and int8 Q/DQ from the graph itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from stylecast.runtime.errors import StylecastError
from stylecast.runtime.params import option


@dataclass(frozen=True)
class Precision:
    name: str
    exported: bool  # written by `stylecast export` as NAME.<precision>.onnx (bf16 is PyTorch autocast only)
    psnr_floor_db: float
    ssim_floor: float

    def onnx_name(self, model: str) -> str:
        return f"{model}.{self.name}.onnx"


# The graph's tensor names: export writes them, Triton configs and the TensorRT EP's profiles name them.
INPUT, OUTPUT = "image", "stylized"
# A multi-style graph's second input: [batch, N] float32 weights of its N styles, one row per image (a one-hot row is
# one style, convex weights a blend); the graph's ``styles`` metadata names the rows.
STYLE = "style"
# Tiled inference normalised by the whole image: a statistics graph (image -> STATS, run on a small image that
# stands for the photo) and an apply graph ((image, STATS) -> stylized, run per tile) beside each single-pass
# graph, in its tiled/ folder.
STATS = "in_stats"
GRAPH_KEY, STATS_LAYOUT_KEY, SINGLE_SHA_KEY = "stylecast.graph", "stylecast.stats_layout", "single_sha256"
GraphRole = Literal["stats", "apply"]
# The most statistics patches one call takes, and their largest side (engine profiles are built for these).
STATS_BATCH_MAX, STATS_PATCH_MAX = 144, 192
# The TensorRT EP's optimisation profile (NCHW): any photo up to 1920 px on either side, portrait or landscape,
# so the EP builds its engine once instead of once per new image size.
TRT_PROFILE = {"min": (1, 3, 16, 16), "opt": (1, 3, 512, 512), "max": (4, 3, 1920, 1920)}


def trt_profile(styles: int = 1) -> dict[str, dict[str, tuple[int, ...]]]:
    """TRT_PROFILE per input of a graph: the image's shapes, and a multi-style graph's style weights (one row per
    image of the batch, its ``styles`` columns fixed)."""
    return {end: {INPUT: dims, **({STYLE: (dims[0], styles)} if styles > 1 else {})}
            for end, dims in TRT_PROFILE.items()}


PRECISIONS = {p.name: p for p in (
    Precision("fp32", exported=True, psnr_floor_db=60.0, ssim_floor=0.0),
    Precision("fp16", exported=True, psnr_floor_db=45.0, ssim_floor=0.0),
    Precision("int8", exported=True, psnr_floor_db=35.0, ssim_floor=0.97),
    # Measured about 41 dB on the shipped models: bf16 keeps 8 mantissa bits where fp16 keeps 11.
    Precision("bf16", exported=False, psnr_floor_db=30.0, ssim_floor=0.97),
)}
EXPORTED = tuple(name for name, p in PRECISIONS.items() if p.exported)
# int8 calibration methods (`--int8-method`; the int8 exporter maps them to ONNX Runtime's calibrators).
INT8_METHODS = ("entropy", "minmax", "percentile")


@dataclass(frozen=True)
class BackendRow:
    """One inference engine: how to open it (lazily), and how the CLI, the bench and reports name it."""

    name: str  # the --backend value and the metadata's backend name
    target: str  # "module:Class" of its Backend, imported only when a file is opened with it
    label: str  # the bench's format column and the compression reports' engine label ("ONNX Runtime")
    short: str  # the label in narrow tables ("ORT fp32")
    summary: str  # what it runs on, for --help
    extra: str  # the pip extra that installs it


BACKENDS = {b.name: b for b in (
    BackendRow("onnxruntime", "stylecast.runtime.backends.onnxruntime:OnnxRuntimeBackend", "ONNX Runtime", "ORT",
               "CPU, CUDA or its TensorRT provider", "cpu"),
    BackendRow("openvino", "stylecast.runtime.backends.openvino:OpenVinoBackend", "OpenVINO", "OpenVINO",
               "x86 CPUs, Intel GPUs and NPUs", "openvino"),
    BackendRow("tensorrt", "stylecast.runtime.backends.tensorrt:TensorRTBackend", "TensorRT", "TensorRT",
               "engines built by `stylecast build-engine`", "gpu"),
)}


@dataclass(frozen=True)
class FileKind:
    name: str  # the metadata's stylecast.format
    suffixes: tuple[str, ...]
    backends: tuple[str, ...]  # rows of BACKENDS that run it; the first is the default (--backend auto)
    metadata: str  # "module:function" that reads its metadata as string pairs
    triton: tuple[str, str] | None = None  # Triton's platform and the file name it expects in a model version

    @property
    def backend(self) -> str | None:
        """The default backend, or None for files no backend runs."""
        return self.backends[0] if self.backends else None


FILE_KINDS = {k.name: k for k in (
    FileKind("model", (".safetensors",), (), "stylecast.runtime.artifacts:safetensors_metadata"),
    # ONNX Runtime stays the default; OpenVINO runs the same files (fp32, fp16, int8 QDQ), faster on x86 CPUs.
    FileKind("onnx", (".onnx",), ("onnxruntime", "openvino"), "stylecast.runtime.artifacts:onnx_metadata",
             ("onnxruntime_onnx", "model.onnx")),
    FileKind("tensorrt-engine", (".engine", ".plan"), ("tensorrt",), "stylecast.runtime.artifacts:sidecar_metadata",
             ("tensorrt_plan", "model.plan")),
)}
ONNX = FILE_KINDS["onnx"].name
ENGINE_FORMAT = FILE_KINDS["tensorrt-engine"].name
# ONNX Runtime's providers that run on a GPU (the rest run on the host).
DEVICE_PROVIDERS = {"CUDAExecutionProvider", "TensorrtExecutionProvider"}


def runs_on_gpu(models: list[Path], options: BackendOptions) -> bool:
    """Whether these models under ``options`` need a GPU: an engine file, the TensorRT backend, or an ONNX Runtime
    GPU provider asked for by name (a scheduler reserves one for each worker that does)."""
    engines = FILE_KINDS["tensorrt-engine"].suffixes
    return (options.backend == "tensorrt" or any(m.suffix.lower() in engines for m in models)
            or bool(set(options.provider or ()) & DEVICE_PROVIDERS))


def register(kind: FileKind | None = None, backend: BackendRow | None = None) -> None:
    """Add a row (a plug-in's file kind or backend) at run time, before any command reads the table."""
    if backend is not None:
        BACKENDS[backend.name] = backend
    if kind is not None:
        FILE_KINDS[kind.name] = kind


def backend_help() -> str:
    """--backend's help, from the table."""
    rows = "; ".join(f"{b.name} ({b.summary})" for b in BACKENDS.values())
    return f"auto (each file's default backend) or one of: {rows}."


@dataclass
class BackendOptions:
    """How a model is opened: the one option group `stylize`, `serve` and `bench` share."""

    backend: str = option("auto", backend_help)  # read when a command is built: rows added by then show
    provider: list[str] | None = option(None, "ONNX Runtime provider(s), in order; with --backend openvino its "
                                              "device (CPU, GPU, NPU, AUTO).")
    threads: int | None = option(None, "Inference threads (default: the backend's choice).")
    openvino_precision: str = option("f32", "--backend openvino on a CPU: f32 (the graph's own precision), bf16, "
                                            "or auto (bf16 where measured faster; lower parity).")
    # Idle inference threads spin between calls by default (lowest latency); the bench turns it off so a format's
    # idle threads do not steal the cores from the next format in the round.
    spin: bool = option(True, cli=False)


def kind_of(suffix: str) -> FileKind | None:
    return next((k for k in FILE_KINDS.values() if suffix.lower() in k.suffixes), None)


def companion_path(single: Path, role: GraphRole) -> Path:
    """Where the ``role`` graph (or engine) of a single-pass model lives: ``a/wave.fp32.onnx`` ->
    ``a/tiled/wave.fp32.stats.onnx``. A folder of its own keeps them out of every listing of models."""
    single = Path(single)
    return single.parent / "tiled" / f"{single.name.removesuffix(single.suffix)}.{role}{single.suffix}"


def precision(name: str) -> Precision:
    """The row for ``name``; an unknown precision is a user error naming the known ones."""
    if name not in PRECISIONS:
        raise StylecastError(f"unknown precision {name!r}; choose from {', '.join(PRECISIONS)}")
    return PRECISIONS[name]


def triton_model_name(path: Path) -> str:
    """The model name `stylecast export --triton` gives a file and `stylecast serve` answers to under /v2:
    ``wave.fp16.onnx`` -> ``wave_fp16``; its engine ``wave.fp16.<gpu>.trt<version>.engine`` ->
    ``wave_fp16_trt<version>_<gpu>``, so plans of two TensorRT releases never overwrite each other, and the name
    says which Triton release can load it (a plan runs only on the TensorRT version that built it)."""
    path = Path(path)
    kind = kind_of(path.suffix)
    if kind is not None and kind.name == "tensorrt-engine":
        head, _, version = path.name.removesuffix(path.suffix).partition(".trt")
        style, precision_name, gpu = head.split(".", 2)
        return f"{style}_{precision_name}_trt{version.replace('.', '_')}_{gpu.replace('-', '_')}"
    return path.name.removesuffix(path.suffix).replace(".", "_")
