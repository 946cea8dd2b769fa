"""ONNX -> TensorRT engine, on the device that will run it (no torch: TensorRT, numpy, and onnx to read the
ONNX's stylecast metadata).

Engines are tied to one TensorRT version and one GPU, so each carries a JSON sidecar that the
TensorRT backend checks before deserializing. The precision lives in the ONNX graph (fp16 tensors,
int8 Q/DQ), and every supported TensorRT builds it strongly typed: 10.x with the STRONGLY_TYPED network flag
(10.3 on JetPack 6 included), 11.x by default.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from stylecast.runtime.artifacts import FORMAT_KEY, sha256_file, sidecar_path, slug, tool_versions
from stylecast.runtime.backends.tensorrt import ENGINE_FORMAT, Profile, Target, import_tensorrt, trt_logger, version_tuple
from stylecast.runtime.errors import StylecastError
from stylecast.runtime.formats import GRAPH_KEY, SINGLE_SHA_KEY, STATS_BATCH_MAX, STATS_PATCH_MAX, companion_path
from stylecast.runtime.images import atomic_write

OLDEST_SUPPORTED = (10, 0)
# TensorRT 11 builds strongly typed only; its STRONGLY_TYPED flag is deprecated and ignored (TensorRT 11.0
# Python API, NetworkDefinitionCreationFlag), so it is set on 10.x alone.
FLAG_IGNORED_SINCE = (11, 0)


def network_flags(version: tuple[int, ...]) -> list[str]:
    """``trt.NetworkDefinitionCreationFlag`` names for ``create_network``: strongly typed on every TensorRT 10.x.

    STRONGLY_TYPED exists from 10.0 on (10.3 is JetPack 6's). Weakly typed builds treat the graph's fp32
    tensors as hints and may run InstanceNorm in fp16 even though the export keeps it fp32 on purpose;
    strongly typed ones follow the graph: fp16 where the ONNX says fp16, int8 where its Q/DQ says so.
    """
    if version < OLDEST_SUPPORTED:
        raise StylecastError(f"TensorRT {'.'.join(map(str, version))} is too old; install TensorRT 10 or newer")
    return [] if version >= FLAG_IGNORED_SINCE else ["STRONGLY_TYPED"]


def engine_path(out_dir: Path, name: str, precision: str, target: Target) -> Path:
    """``NAME.<precision>.<gpu>.<trt-version>.engine``: engines for several devices can share a folder."""
    return Path(out_dir) / f"{name}.{precision}.{slug(target.gpu_name)}.trt{target.trt_version}.engine"


def make_sidecar(onnx_path: Path, onnx_meta: dict[str, str], profile: Profile, target: Target,
                 workspace_mib: int) -> dict[str, str | dict]:
    """The engine's metadata: its ONNX lineage, the precision, and the TensorRT/GPU it is bound to."""
    version = version_tuple(target.trt_version)
    return {
        FORMAT_KEY: ENGINE_FORMAT,
        "style": onnx_meta["style"], "arch": onnx_meta["arch"], "precision": onnx_meta["precision"],
        **{key: onnx_meta[key] for key in ("styles",) if key in onnx_meta},  # a multi-style model's row names
        "onnx_file": Path(onnx_path).name, "onnx_sha256": sha256_file(onnx_path),
        "source_sha256": onnx_meta.get("source_sha256", ""),
        "tensorrt_version": target.trt_version, "gpu_name": target.gpu_name,
        "compute_capability": target.compute_capability,
        "strongly_typed": True, "network_flags": network_flags(version), "tf32": False,
        "profile": profile.as_text(), "workspace_mib": workspace_mib,
        "versions": json.loads(tool_versions("numpy")), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


class EngineBuilder:
    """One job: parse an ONNX file and serialize an engine for this GPU (NVIDIA samples' shape)."""

    def __init__(self, trt, verbose: bool = False) -> None:  # noqa: ANN001 - the tensorrt module
        self.trt = trt
        self.logger = trt_logger(trt, verbose)
        self.version = version_tuple(trt.__version__)

    def _network(self, builder, onnx_path: Path):  # noqa: ANN001, ANN202 - TensorRT objects
        trt = self.trt
        flags = 0
        for name in network_flags(self.version):
            flags |= 1 << int(getattr(trt.NetworkDefinitionCreationFlag, name))
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
        # TensorRT enables TF32 for fp32 layers unless told not to (BuilderFlag.TF32 is on by default): an
        # "fp32" engine would round its convs' inputs to 10 mantissa bits. fp16/int8 graphs say so themselves.
        config.clear_flag(trt.BuilderFlag.TF32)
        shapes = builder.create_optimization_profile()
        shapes.set_shape(network.get_input(0).name, profile.min, profile.opt, profile.max)
        # A multi-style graph's style weights and an apply graph's statistics: one row per image of the batch (a
        # statistics graph's style weights are one fixed row for the whole photo: no range to give).
        for i in range(1, network.num_inputs):
            extra = network.get_input(i)
            if extra.shape[0] < 0:
                width = extra.shape[1]
                shapes.set_shape(extra.name, (profile.min[0], width), (profile.opt[0], width), (profile.max[0], width))
        config.add_optimization_profile(shapes)
        self._use_timing_cache(config, timing_cache)
        plan = builder.build_serialized_network(network, config)
        if plan is None:
            raise StylecastError(f"{onnx_path}: TensorRT could not build an engine (see its log above); "
                                 "try a smaller --max shape or a larger --workspace-mib")
        updated = config.get_timing_cache()  # None when the build kept no cache (Polygraphy guards this too)
        if updated is not None:
            atomic_write(timing_cache, lambda tmp: tmp.write_bytes(bytes(updated.serialize())))
        return bytes(plan)

    def _use_timing_cache(self, config, path: Path) -> None:  # noqa: ANN001 - trt.IBuilderConfig
        """The cache file if TensorRT accepts it; one from another GPU or TensorRT is set aside, not fatal."""
        cache = config.create_timing_cache(path.read_bytes() if path.is_file() else b"")
        if cache is None or not config.set_timing_cache(cache, ignore_mismatch=False):
            print(f"warning: {path}: timing cache not usable with this GPU/TensorRT; building without it", flush=True)
            config.set_timing_cache(config.create_timing_cache(b""), ignore_mismatch=False)


def build_engine(onnx_path: Path, onnx_meta: dict[str, str], out_dir: Path, profile: Profile,
                 workspace_mib: int, timing_cache: Path, target: Target, verbose: bool = False) -> Path:
    """Build, then write ``NAME.<precision>.<gpu>.<trt>.engine`` and its JSON sidecar atomically; where the ONNX
    has tiled graphs beside it, their engines too (in the engine's tiled/ folder)."""
    trt = import_tensorrt()
    name = Path(onnx_path).name.split(".")[0]
    dest = engine_path(out_dir, name, onnx_meta["precision"], target)
    builder = EngineBuilder(trt, verbose)
    plan = builder.build(Path(onnx_path), onnx_meta["precision"], profile, workspace_mib, timing_cache)
    _write(dest, plan, make_sidecar(onnx_path, onnx_meta, profile, target, workspace_mib))
    single_sha = sha256_file(dest)
    for role, graph_profile in tiled_profiles(profile).items():
        graph = companion_path(Path(onnx_path), role)
        if not graph.is_file():
            continue
        plan = builder.build(graph, onnx_meta["precision"], graph_profile, workspace_mib, timing_cache)
        sidecar = make_sidecar(graph, onnx_meta, graph_profile, target, workspace_mib)
        sidecar.update({GRAPH_KEY: role, SINGLE_SHA_KEY: single_sha})
        _write(companion_path(dest, role), plan, sidecar)
    return dest


def tiled_profiles(profile: Profile) -> dict[str, Profile]:
    """The statistics engine takes up to a full batch of statistics patches (no side over STATS_PATCH_MAX) of one
    photo; the apply engine takes the single engine's tiles."""
    patches = Profile((1, 3, 16, 16), (STATS_BATCH_MAX, 3, 160, 160),
                      (STATS_BATCH_MAX, 3, STATS_PATCH_MAX, STATS_PATCH_MAX))
    return {"stats": patches, "apply": profile}


def _write(dest: Path, plan: bytes, sidecar: dict) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(dest, lambda tmp: tmp.write_bytes(plan))
    atomic_write(sidecar_path(dest), lambda tmp: tmp.write_text(json.dumps(sidecar, indent=2) + "\n"))
