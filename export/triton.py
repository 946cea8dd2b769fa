"""A Triton Inference Server model repository for exported models (ONNX, and TensorRT plans where built).

The config is built as Triton's own ``ModelConfig`` protobuf (from tritonclient) and written in
protobuf text format, so a field Triton does not know cannot be written.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import onnx

from stylecast.runtime.artifacts import read_sidecar, sha256_file
from stylecast.runtime.backends.tensorrt import ENGINE_FORMAT
from stylecast.runtime.errors import StylecastError
from stylecast.runtime.formats import FILE_KINDS, triton_model_name
from stylecast.runtime.images import atomic_write

# ONNX element types -> Triton data types (the ones a stylecast graph can have at its edges).
TRITON_TYPES = {"FLOAT": "TYPE_FP32", "FLOAT16": "TYPE_FP16", "UINT8": "TYPE_UINT8", "INT8": "TYPE_INT8"}


def model_config_pb2():  # noqa: ANN201 - returns the module
    try:
        from tritonclient.grpc import model_config_pb2
    except ImportError as exc:
        raise StylecastError("--triton needs Triton's model config schema: pip install 'tritonclient[grpc]'") from exc
    return model_config_pb2


def graph_io(model: onnx.ModelProto) -> list[tuple[str, str, list[int], bool]]:
    """(name, Triton type, dims without the batch dim, is_input); symbolic dims become -1."""
    rows = []
    for values, is_input in ((model.graph.input, True), (model.graph.output, False)):
        for value in values:
            tensor = value.type.tensor_type
            elem = onnx.TensorProto.DataType.Name(tensor.elem_type)
            if elem not in TRITON_TYPES:
                raise StylecastError(f"tensor {value.name}: type {elem} has no Triton equivalent here")
            dims = [d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim]
            rows.append((value.name, TRITON_TYPES[elem], dims[1:], is_input))
    return rows


def make_config(name: str, platform: str, model: onnx.ModelProto, max_batch_size: int) -> str:
    """config.pbtxt text: batch handled by Triton (max_batch_size), H and W dynamic (-1)."""
    pb = model_config_pb2()
    config = pb.ModelConfig(name=name, platform=platform, max_batch_size=max_batch_size)
    for tensor, dtype, dims, is_input in graph_io(model):
        (config.input if is_input else config.output).add(name=tensor, data_type=pb.DataType.Value(dtype), dims=dims)
    config.dynamic_batching.SetInParent()
    from google.protobuf import text_format

    return text_format.MessageToString(config)


def _write_model(repo: Path, name: str, platform: str, filename: str, source: Path, graph: onnx.ModelProto,
                 max_batch_size: int) -> Path:
    folder = repo / name
    text = make_config(name, platform, graph, max_batch_size)
    atomic_write(folder / "1" / filename, lambda tmp: shutil.copyfile(source, tmp))
    atomic_write(folder / "config.pbtxt", lambda tmp: tmp.write_text(text))
    return folder


def engines_for(onnx_path: Path) -> list[Path]:
    """Engines beside the ONNX whose sidecar says they were built from exactly this file."""
    digest = sha256_file(onnx_path)
    found = []
    for engine in sorted(onnx_path.parent.glob(f"{onnx_path.name.split('.')[0]}.*.engine")):
        sidecar = read_sidecar(engine)
        if sidecar.get("stylecast.format") == ENGINE_FORMAT and sidecar.get("onnx_sha256") == digest:
            found.append(engine)
    return found


def export_repository(repo: Path, onnx_paths: list[Path], max_batch_size: int = 8) -> list[Path]:
    """One Triton model per ONNX and per engine built from exactly that ONNX (names from ``triton_model_name``)."""
    written = []
    for path in onnx_paths:
        graph = onnx.load(str(path), load_external_data=False)
        written.append(_write_model(repo, triton_model_name(path), *FILE_KINDS["onnx"].triton, path, graph,
                                    max_batch_size))
        for engine in engines_for(path):
            batch = min(max_batch_size, int(read_sidecar(engine)["profile"]["max"].split("x")[0]))
            written.append(_write_model(repo, triton_model_name(engine), *FILE_KINDS[ENGINE_FORMAT].triton, engine,
                                        graph, batch))
    return written
