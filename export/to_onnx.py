"""Checkpoint -> fp32 ONNX: dynamo export, dynamic N/H/W, simplified, checked, with metadata."""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import onnx
import torch

from stylecast.runtime.artifacts import FORMAT_KEY, TEACHER_KEY, sha256_file, tool_versions
from stylecast.runtime.formats import INPUT, OUTPUT, STYLE
from stylecast.runtime.images import atomic_write
from stylecast.train.checkpoint import LoadedModel

OPSET = 18
DYNAMIC_AXES = {0: "batch", 2: "height", 3: "width"}
NORMALISATION = "input float32 NCHW RGB in [0,255]; output float32 NCHW RGB clamped to [0,255]"
EXPORT_TOOLS = ("torch", "onnx", "onnxscript", "onnxslim", "onnxruntime")


def _name_dynamic_axes(model: onnx.ModelProto) -> None:
    """The exporter names symbolic dims s0, s53...; users and TensorRT profiles read these names. A multi-style
    graph's style weights share the image's batch dim (their other dim is the fixed count of styles)."""
    for value in [*model.graph.input, *model.graph.output]:
        dims = value.type.tensor_type.shape.dim
        axes = {0: DYNAMIC_AXES[0]} if value.name == STYLE else DYNAMIC_AXES
        for axis, name in axes.items():
            dims[axis].ClearField("dim_value")
            dims[axis].dim_param = name


def trace_to_onnx(model: torch.nn.Module, styles: int = 1) -> onnx.ModelProto:
    """torch.export (dynamo) -> ONNX at opset 18 with batch, height and width dynamic; a net of ``styles`` > 1
    also takes the [batch, styles] style weights."""
    from torch.export import Dim

    # torch warns about every torchvision op it cannot register; none is used here.
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    example = torch.rand(1, 3, 64, 64) * 255.0
    dynamic = {"x": {axis: Dim.DYNAMIC for axis in DYNAMIC_AXES}}
    args, names = (example,), [INPUT]
    if styles > 1:  # one batch dim for both inputs: each image has its row of style weights
        batch = Dim(DYNAMIC_AXES[0])
        dynamic = {"x": {**dynamic["x"], 0: batch}, "style": {0: batch}}
        args, names = (example, torch.eye(styles)[:1]), [INPUT, STYLE]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(model.eval(), args, dynamo=True, opset_version=OPSET,
                                    input_names=names, output_names=[OUTPUT], dynamic_shapes=dynamic,
                                    verbose=False)
    return program.model_proto


def simplify(model: onnx.ModelProto) -> onnx.ModelProto:
    import onnxslim

    return onnxslim.slim(model)


def set_metadata(model: onnx.ModelProto, meta: dict[str, str]) -> None:
    del model.metadata_props[:]
    for key, value in sorted(meta.items()):
        model.metadata_props.add(key=key, value=value)


def export_metadata(source: LoadedModel, precision: str) -> dict[str, str]:
    """What the runtime and later stages check: style (and a multi-style net's styles, in the row order of its
    style input), architecture, precision, lineage, versions."""
    src = source.meta
    styles = {"styles": json.dumps(source.styles)} if source.model.config.styles > 1 else {}
    teacher = {TEACHER_KEY: src[TEACHER_KEY]} if src.get(TEACHER_KEY) else {}  # a student's: checked on every load
    return {
        **styles,
        **teacher,
        FORMAT_KEY: "onnx",
        "style": src["style"],
        "arch": src["arch"],
        "precision": precision,
        "normalisation": NORMALISATION,
        "source_checkpoint": source.path.name,
        "source_sha256": sha256_file(source.path),
        "style_image_sha256": src.get("style_image_sha256", ""),
        "loss_net": src.get("loss_net", ""),
        "train_steps": src.get("steps", ""),
        "versions": tool_versions(*EXPORT_TOOLS),
    }


def save_onnx(model: onnx.ModelProto, dest: Path) -> None:
    onnx.checker.check_model(model, full_check=True)
    atomic_write(dest, lambda tmp: onnx.save_model(model, str(tmp)))


def export_fp32(source: LoadedModel, dest: Path) -> onnx.ModelProto:
    model = simplify(trace_to_onnx(source.model, source.model.config.styles))
    _name_dynamic_axes(model)
    model.producer_name, model.doc_string = "stylecast", f"stylecast {source.meta['style']} transform net"
    set_metadata(model, export_metadata(source, "fp32"))
    save_onnx(model, dest)
    return model


def describe(meta: dict[str, str]) -> str:
    return json.dumps({k: meta[k] for k in ("style", "precision", "source_sha256") if k in meta})
