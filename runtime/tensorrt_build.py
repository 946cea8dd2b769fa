"""ONNX -> TensorRT engine, on the device that will run it (no torch: TensorRT, numpy, and onnxruntime to read the
ONNX's stylecast metadata).

Engines are tied to one TensorRT version and one GPU, so each carries a JSON sidecar that the
TensorRT backend checks before deserializing. The precision lives in the ONNX graph (fp16 tensors,
int8 Q/DQ): TensorRT >= 10.12 builds it strongly typed (11.x always does, its precision flags are
gone); older 10.x builds it weakly typed with the matching builder flags.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType

from .errors import StylecastError, import_optional
from .images import atomic_write
from .metadata import FORMAT_KEY, sha256_file, tool_versions

ENGINE_FORMAT = "tensorrt-engine"
STRONGLY_TYPED_SINCE = (10, 12)
OLDEST_SUPPORTED = (10, 0)
WEAK_TYPING_FLAGS = {"fp32": [], "fp16": ["FP16"], "int8": ["INT8"]}
Shape = tuple[int, int, int, int]


def parse_shape(text: str) -> Shape:
    """``1x3x256x256`` -> (1, 3, 256, 256): an NCHW image shape with 3 channels."""
    parts = text.lower().replace(" ", "").split("x")
    if len(parts) != 4 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise StylecastError(f"shape '{text}': expected NxCxHxW with positive integers, e.g. 1x3x512x512")
    shape = tuple(int(p) for p in parts)
    if shape[1] != 3:
        raise StylecastError(f"shape '{text}': stylecast models take 3 (RGB) channels, not {shape[1]}")
    return shape  # type: ignore[return-value]


@dataclass(frozen=True)
class Profile:
    """One TensorRT optimization profile for the image input: every dim min <= opt <= max."""

    min: Shape
    opt: Shape
    max: Shape

    @classmethod
    def parse(cls, min_text: str, opt_text: str, max_text: str) -> Profile:
        profile = cls(parse_shape(min_text), parse_shape(opt_text), parse_shape(max_text))
        if not all(lo <= mid <= hi for lo, mid, hi in zip(profile.min, profile.opt, profile.max, strict=True)):
            raise StylecastError(f"profile --min {min_text} --opt {opt_text} --max {max_text}: "
                                 "each dimension needs min <= opt <= max")
        return profile

    def contains(self, shape: tuple[int, ...]) -> bool:
        return len(shape) == 4 and all(lo <= s <= hi for lo, s, hi in zip(self.min, shape, self.max, strict=True))

    def as_text(self) -> dict[str, str]:
        return {k: "x".join(map(str, v)) for k, v in asdict(self).items()}


def version_tuple(version: str) -> tuple[int, ...]:
    """'10.13.0.35' -> (10, 13, 0, 35); non-numeric tails (rc, post) are dropped."""
    return tuple(int(m) for m in re.findall(r"\d+", version.split("+")[0])[:4])


def strongly_typed(version: tuple[int, ...]) -> bool:
    """Strong typing where TensorRT offers it (10.12+) and where it is the only mode (11+)."""
    if version < OLDEST_SUPPORTED:
        raise StylecastError(f"TensorRT {'.'.join(map(str, version))} is too old; install TensorRT 10 or newer")
    return version >= STRONGLY_TYPED_SINCE


def builder_flags(precision: str, version: tuple[int, ...]) -> list[str]:
    """``trt.BuilderFlag`` names to set: none when strongly typed (the graph carries the types)."""
    if precision not in WEAK_TYPING_FLAGS:
        raise StylecastError(f"unknown precision '{precision}'; expected one of {sorted(WEAK_TYPING_FLAGS)}")
    return [] if strongly_typed(version) else WEAK_TYPING_FLAGS[precision]


def slug(text: str) -> str:
    """A GPU name as a file-name part: 'NVIDIA Jetson AGX Orin' -> 'nvidia-jetson-agx-orin'."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "gpu"


@dataclass(frozen=True)
class Target:
    """What an engine is bound to: the TensorRT that built it and the GPU it was built on."""

    trt_version: str
    gpu_name: str
    compute_capability: str  # "8.7"


def engine_path(out_dir: Path, name: str, precision: str, target: Target) -> Path:
    """``NAME.<precision>.<gpu>.<trt-version>.engine``: engines for several devices can share a folder."""
    return Path(out_dir) / f"{name}.{precision}.{slug(target.gpu_name)}.trt{target.trt_version}.engine"


def sidecar_path(engine: Path) -> Path:
    return Path(engine).with_suffix(Path(engine).suffix + ".json")


def make_sidecar(onnx_path: Path, onnx_meta: dict[str, str], profile: Profile, target: Target,
                 workspace_mib: int) -> dict[str, str | dict]:
    """The engine's metadata: its ONNX lineage, the precision, and the TensorRT/GPU it is bound to."""
    version = version_tuple(target.trt_version)
    return {
        FORMAT_KEY: ENGINE_FORMAT,
        "style": onnx_meta["style"], "arch": onnx_meta["arch"], "precision": onnx_meta["precision"],
        "onnx_file": Path(onnx_path).name, "onnx_sha256": sha256_file(onnx_path),
        "source_sha256": onnx_meta.get("source_sha256", ""),
        "tensorrt_version": target.trt_version, "gpu_name": target.gpu_name,
        "compute_capability": target.compute_capability,
        "strongly_typed": strongly_typed(version), "builder_flags": builder_flags(onnx_meta["precision"], version),
        "profile": profile.as_text(), "workspace_mib": workspace_mib,
        "versions": json.loads(tool_versions("numpy")), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def check_sidecar(sidecar: dict, running: Target, engine: Path) -> None:
    """Refuse an engine built for another TensorRT or GPU: it would fail or run badly there."""
    rebuild = f"rebuild it here with `stylecast build-engine {sidecar.get('onnx_file', 'MODEL.onnx')}`"
    if sidecar.get(FORMAT_KEY) != ENGINE_FORMAT:
        raise StylecastError(f"{engine}: its sidecar {sidecar_path(engine).name} is not a stylecast engine "
                             f"description; {rebuild}")
    built = Target(str(sidecar.get("tensorrt_version")), str(sidecar.get("gpu_name")),
                   str(sidecar.get("compute_capability")))
    for field, label in (("trt_version", "TensorRT"), ("compute_capability", "compute capability"),
                         ("gpu_name", "GPU")):
        if getattr(built, field) != getattr(running, field):
            raise StylecastError(f"{engine}: built for {label} {getattr(built, field)}, this machine has "
                                 f"{getattr(running, field)}; {rebuild}")


def read_sidecar(engine: Path) -> dict:
    side = sidecar_path(engine)
    try:
        return json.loads(side.read_text())
    except FileNotFoundError as exc:
        raise StylecastError(f"{engine}: no sidecar {side.name}; rebuild the engine with `stylecast build-engine`") from exc
    except (OSError, ValueError) as exc:
        raise StylecastError(f"{side}: unreadable engine sidecar ({exc}); rebuild with `stylecast build-engine`") from exc


def import_tensorrt() -> ModuleType:
    return import_optional("tensorrt", "TensorRT is not installed: on a Jetson it ships with JetPack; on a GPU server "
                                       "pip install 'stylecast[gpu]'")


class EngineBuilder:
    """One job: parse an ONNX file and serialize an engine for this GPU (NVIDIA samples' shape)."""

    def __init__(self, trt, verbose: bool = False) -> None:  # noqa: ANN001 - the tensorrt module
        self.trt = trt
        self.logger = trt.Logger(trt.Logger.VERBOSE if verbose else trt.Logger.WARNING)
        self.version = version_tuple(trt.__version__)

    def _network(self, builder, onnx_path: Path):  # noqa: ANN001, ANN202 - TensorRT objects
        trt = self.trt
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if strongly_typed(self.version) else 0
        network = builder.create_network(flags)
        parser = trt.OnnxParser(network, self.logger)
        if not parser.parse_from_file(str(onnx_path)):
            errors = "; ".join(str(parser.get_error(i).desc()) for i in range(parser.num_errors))
            raise StylecastError(f"{onnx_path}: TensorRT's ONNX parser refused it ({errors}); "
                                 "re-export it with `stylecast export`")
        return network, parser

    def build(self, onnx_path: Path, precision: str, profile: Profile, workspace_mib: int,
              timing_cache: Path) -> bytes:
        """The serialized engine; the timing cache file is read first and written back after."""
        trt = self.trt
        builder = trt.Builder(self.logger)
        network, _parser = self._network(builder, onnx_path)
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mib << 20)
        for flag in builder_flags(precision, self.version):
            config.set_flag(getattr(trt.BuilderFlag, flag))
        shapes = builder.create_optimization_profile()
        shapes.set_shape(network.get_input(0).name, profile.min, profile.opt, profile.max)
        config.add_optimization_profile(shapes)
        cache = config.create_timing_cache(timing_cache.read_bytes() if timing_cache.is_file() else b"")
        config.set_timing_cache(cache, ignore_mismatch=False)
        plan = builder.build_serialized_network(network, config)
        if plan is None:
            raise StylecastError(f"{onnx_path}: TensorRT could not build an engine (see its log above); "
                                 "try a smaller --max shape or a larger --workspace-mib")
        updated = config.get_timing_cache().serialize()
        atomic_write(timing_cache, lambda tmp: tmp.write_bytes(bytes(updated)))
        return bytes(plan)


def build_engine(onnx_path: Path, onnx_meta: dict[str, str], out_dir: Path, profile: Profile,
                 workspace_mib: int, timing_cache: Path, target: Target, verbose: bool = False) -> Path:
    """Build, then write ``NAME.<precision>.<gpu>.<trt>.engine`` and its JSON sidecar atomically."""
    trt = import_tensorrt()
    name = Path(onnx_path).name.split(".")[0]
    dest = engine_path(out_dir, name, onnx_meta["precision"], target)
    plan = EngineBuilder(trt, verbose).build(Path(onnx_path), onnx_meta["precision"], profile, workspace_mib,
                                             timing_cache)
    sidecar = make_sidecar(onnx_path, onnx_meta, profile, target, workspace_mib)
    atomic_write(dest, lambda tmp: tmp.write_bytes(plan))
    atomic_write(sidecar_path(dest), lambda tmp: tmp.write_text(json.dumps(sidecar, indent=2) + "\n"))
    return dest
