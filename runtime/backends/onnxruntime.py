"""ONNX Runtime backend: TensorRT EP, CUDA EP or CPU, whichever this machine has."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from types import ModuleType

import numpy as np

from stylecast.runtime.artifacts import onnx_metadata, require
from stylecast.runtime.backends.base import Backend, Stages, Variant, check_inputs
from stylecast.runtime.errors import StylecastError, import_optional
from stylecast.runtime.formats import DEVICE_PROVIDERS, STYLE, TRT_PROFILE, BackendOptions, trt_profile
from stylecast.runtime.specialize import specialized_bytes
from stylecast.runtime.styles_catalog import model_styles
from stylecast.runtime.timing import elapsed_ms

PREFERENCE = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
# Providers that run no local graph (Azure calls remote endpoints): a bench row for them would time CPU twice.
NOT_ENGINES = {"AzureExecutionProvider"}
NO_SPINNING = {"session.intra_op.allow_spinning": "0", "session.inter_op.allow_spinning": "0"}


def import_ort() -> ModuleType:
    return import_optional("onnxruntime", "ONNX Runtime is not installed: pip install onnxruntime "
                                          "(or onnxruntime-gpu via 'stylecast[gpu]')")


def engine_providers() -> list[str]:
    """The providers that run the graph on this machine, in ONNX Runtime's order."""
    return [p for p in import_ort().get_available_providers() if p not in NOT_ENGINES]


def short_name(provider: str) -> str:
    return provider.removesuffix("ExecutionProvider")


def choose_providers(available: list[str], requested: list[str] | None) -> list[str]:
    """Requested providers in order (each must exist), else the best available ones."""
    if requested:
        missing = [p for p in requested if p not in available]
        if missing:
            raise StylecastError(f"execution provider(s) {missing} not available here; available: {available}")
        return requested
    return [p for p in PREFERENCE if p in available] or available


def provider_options(provider: str, cache_dir: Path, styles: int = 1) -> dict[str, str]:
    """TensorRT EP: engine and timing caches, one optimisation profile (with a multi-style graph's ``styles``
    weights per image), and strong typing.

    The precision is in the graph (fp16 tensors, int8 Q/DQ with their scales), so the EP's fp16/int8 flags
    stay off: the EP builds strongly typed only when both are (onnxruntime PR #24298), and weak typing could
    run the InstanceNorms that the export keeps fp32 in fp16. Without profile shapes it would rebuild its
    engine for every new image size (minutes on a Jetson).
    """
    if provider != "TensorrtExecutionProvider":
        return {}
    engines = cache_dir / "ort-trt"
    engines.mkdir(parents=True, exist_ok=True)  # the EP does not create parents and falls back to CUDA silently
    shapes = {end: ",".join(f"{name}:{'x'.join(map(str, dims))}" for name, dims in inputs.items())
              for end, inputs in trt_profile(styles).items()}
    return {"trt_engine_cache_enable": "True", "trt_engine_cache_path": str(engines), "trt_timing_cache_enable": "True",
            "trt_fp16_enable": "False", "trt_int8_enable": "False", "trt_profile_min_shapes": shapes["min"],
            "trt_profile_opt_shapes": shapes["opt"], "trt_profile_max_shapes": shapes["max"]}


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"
    requires = "onnxruntime"

    def __init__(self, path: Path, providers: list[str] | None = None, threads: int | None = None,
                 config: dict[str, str] | None = None, graph: bytes | None = None) -> None:
        """``graph``: the serialized graph to run in place of the file's (its style folded in, see ``specialized``);
        the file still gives the metadata."""
        super().__init__(path)
        self._settings = (providers, threads, config)
        ort = import_ort()
        from stylecast.runtime.cache import cache_dir

        options = ort.SessionOptions()
        options.log_severity_level = 3
        if threads:
            options.intra_op_num_threads = threads
        for key, value in (config or {}).items():  # session config entries, e.g. thread spinning
            options.add_session_config_entry(key, value)
        chosen = choose_providers(ort.get_available_providers(), providers)
        self._meta = onnx_metadata(self.path)  # checked before any session is built for a foreign file
        require(self._meta, "onnx", path)
        styles = len(model_styles(self._meta, str(path))) if graph is None else 1  # a folded graph takes no style
        with_options = [(p, provider_options(p, cache_dir(), styles)) for p in chosen]
        try:
            self.session = ort.InferenceSession(str(path) if graph is None else graph, options, providers=with_options)
        except Exception as exc:  # ORT raises its own untyped errors for bad files
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise StylecastError(f"{path}: ONNX Runtime cannot load this model ({first}); "
                                 "re-export it with `stylecast export`") from exc
        used = self.session.get_providers()[0]
        if providers and used != providers[0]:  # the provider failed to start: never pass CPU off as it
            raise StylecastError(f"{path}: ONNX Runtime fell back from {providers[0]} to {used}; check that "
                                 f"{short_name(providers[0])}'s libraries load, or choose another --provider")
        inputs = self.session.get_inputs()
        self.inputs = check_inputs(path, [(i.name, len(i.shape)) for i in inputs])
        # Kernel failures come back as exceptions that run() turns into one-line errors; ORT's own log of
        # them would only repeat that on stderr.
        self.run_options = ort.RunOptions()
        self.run_options.log_severity_level = 4

    @classmethod
    def open(cls, path: Path, options: BackendOptions) -> OnnxRuntimeBackend:
        return cls(path, providers=options.provider, threads=options.threads,
                   config=None if options.spin else NO_SPINNING)

    @classmethod
    def variants(cls, path: Path, precision: str, options: BackendOptions) -> list[Variant]:
        """One row per execution provider this machine has (or the ones asked for)."""
        chosen = options.provider or engine_providers()
        return [Variant(short_name(p), precision, replace(options, backend=cls.name, provider=[p])) for p in chosen]

    @property
    def metadata(self) -> dict[str, str]:
        return self._meta

    def specialized(self, style: np.ndarray) -> OnnxRuntimeBackend | None:
        """A session of this file's graph with ``style`` folded into its InstanceNorms, built from memory with this
        one's providers and settings; None for a graph without a style input."""
        if STYLE not in self.inputs:
            return None
        return OnnxRuntimeBackend(self.path, *self._settings, graph=specialized_bytes(self.path, style))

    def run_staged(self, batch: np.ndarray) -> tuple[np.ndarray, Stages | None]:
        """On a GPU provider, IO binding splits the copies from the compute; each ORT call returns once done."""
        if self.session.get_providers()[0] not in DEVICE_PROVIDERS:
            return self.run(batch), None
        ort, session = import_ort(), self.session
        start = time.perf_counter_ns()
        device_in = ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(batch, np.float32), "cuda", 0)
        uploaded = time.perf_counter_ns()
        binding = session.io_binding()
        binding.bind_ortvalue_input(self.inputs[0], device_in)
        binding.bind_output(session.get_outputs()[0].name, "cuda", 0)
        session.run_with_iobinding(binding)
        computed = time.perf_counter_ns()
        out = binding.copy_outputs_to_cpu()[0]
        return out, Stages((uploaded - start) / 1e6, (computed - uploaded) / 1e6, elapsed_ms(computed))

    def close(self) -> None:
        self.session = None  # with it goes the memory arena

    def run(self, batch: np.ndarray, stats: np.ndarray | None = None,
            style: np.ndarray | None = None) -> np.ndarray:
        feeds = dict(zip(self.inputs, self.feeds(batch, stats, style), strict=True))
        try:
            return self.session.run(None, feeds, self.run_options)[0]
        except Exception as exc:  # ORT's errors are untyped; memory exhaustion is the usual one
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise StylecastError(f"{self.path}: inference failed on a {'x'.join(map(str, batch.shape))} input "
                                 f"({first[:200]}); try --tile 512 or --max-side") from exc

    def max_shape(self) -> tuple[int, int, int, int] | None:
        """The TensorRT provider's profile (what its engine cache is built for); other providers take any size."""
        return TRT_PROFILE["max"] if self.session.get_providers()[0] == "TensorrtExecutionProvider" else None

    def describe(self) -> str:
        return f"onnxruntime {self.session.get_providers()[0]}"
