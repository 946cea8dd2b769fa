"""Thumbnail instance normalisation (Chen et al., "Towards Ultra-Resolution Neural Style Transfer via Thumbnail
Instance Normalization", AAAI 2022) as two graphs beside a model's single-pass graph.

A tile normalised by its own statistics is stylized differently from its neighbours: a photo run in tiles comes
out as a patchwork. The *statistics* graph runs the net on a small stand-in for the whole photo and returns every
InstanceNorm layer's per-channel mean and variance; the *apply* graph runs the net on a tile but normalises each
layer with those statistics, so every tile sees the whole image's normalisation while memory stays one tile's.

The statistics graph takes the photo as a batch of patches and pools each InstanceNorm over all of them, so the
statistics of a whole photo come from full-resolution samples of it at the cost of a fraction of its pixels.

Why two graphs beside the untouched single-pass graph, rather than optional inputs on one: ONNX has no optional
graph inputs that every backend of the format table honours, and a graph that also computed statistics on
every call would slow down the single-pass use (most photos) for the sake of the tiled one. Both graphs are made
by surgery on the exported graph of each precision, so they keep its fp16 casts and int8 Q/DQ exactly, and every
InstanceNorm stays in fp32 as in the single-pass graph. The statistics vector is one row per photo:
for each InstanceNorm in graph order, its C means then its C variances.

A multi-style graph's InstanceNorms have unit scale and no shift; the style's affine is the Mul and Add after each,
fed by its ``style`` input. The surgery leaves those alone, so both graphs take ``style`` too: the apply graph one
row per tile, the statistics graph one row for the photo (its statistics depend on the style, through the affine
of every earlier layer).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from stylecast.runtime.artifacts import onnx_metadata, sha256_file
from stylecast.runtime.errors import StylecastError
from stylecast.runtime.formats import (
    GRAPH_KEY,
    SINGLE_SHA_KEY,
    STATS,
    STATS_LAYOUT_KEY,
    STYLE,
    GraphRole,
    companion_path,
)
from stylecast.runtime.specialize import prune

# Raised when the surgery changes, so that exports remake the graphs an older stylecast left beside a model (the
# older ones still compute the same sums and stay usable).
GRAPH_VERSION_KEY, GRAPH_VERSION = "stylecast.graph_version", "3"


def _initializer(graph: onnx.GraphProto, name: str) -> onnx.TensorProto | None:
    """The initializer ``name``, also behind the Cast/Identity nodes a precision conversion may put in front."""
    found = {t.name: t for t in graph.initializer}
    producers = {out: node for node in graph.node for out in node.output}
    while name not in found and name in producers and producers[name].op_type in ("Cast", "Identity"):
        name = producers[name].input[0]
    return found.get(name)


def norm_layers(model: onnx.ModelProto) -> list[tuple[onnx.NodeProto, int]]:
    """Every InstanceNormalization node in graph (topological) order, with its channel count."""
    layers = []
    for node in model.graph.node:
        if node.op_type != "InstanceNormalization":
            continue
        scale = _initializer(model.graph, node.input[1])
        if scale is None:
            raise ValueError(f"InstanceNormalization {node.name}: its scale is not a constant")
        layers.append((node, int(np.prod(scale.dims))))
    if not layers:
        raise ValueError("the graph has no InstanceNormalization: nothing to take statistics of")
    return layers


def _const(name: str, values: list[int] | float) -> onnx.TensorProto:
    array = np.asarray(values, np.int64 if isinstance(values, list) else np.float32)
    return numpy_helper.from_array(array, name)


def _with_role(model: onnx.ModelProto, role: GraphRole, layout: list[int], single_sha: str) -> onnx.ModelProto:
    props = {p.key: p.value for p in model.metadata_props}
    props.update({GRAPH_KEY: role, STATS_LAYOUT_KEY: json.dumps(layout), SINGLE_SHA_KEY: single_sha,
                  GRAPH_VERSION_KEY: GRAPH_VERSION})
    del model.metadata_props[:]
    for key, value in props.items():
        model.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(model)
    return model


def stats_graph(single: onnx.ModelProto, single_sha: str = "") -> onnx.ModelProto:
    """``image`` [N, 3, H, W] (and a multi-style graph's ``style`` [1, S], the photo's) -> ``in_stats``
    [1, 2 * sum(C)]: the N images are patches of one photo, and every InstanceNorm normalises over all of them at
    once (batch and space pooled), returning the means and (biased) variances it used. One image (N = 1) gives
    exactly its InstanceNorm statistics; patches give the statistics of the photo they sample, without the seams a
    mosaic of them would add."""
    model = onnx.ModelProto()
    model.CopyFrom(single)
    graph = model.graph
    layers = norm_layers(model)
    for value in graph.input:
        if value.name == STYLE:  # one row, broadcast over the photo's patches
            value.type.tensor_type.shape.dim[0].dim_value = 1
    graph.initializer.extend([_const("stats_axes", [0, 2, 3]), _const("stats_flat", [1, -1]),
                              _const("stats_shape", [1, -1, 1, 1]), _const("stats_same", [0, 0, 0, 0])])
    replaced, parts = {}, []
    for i, (node, _) in enumerate(layers):
        x, p = f"stats{i}_x", f"stats{i}"
        epsilon = next((a.f for a in node.attribute if a.name == "epsilon"), 1e-5)
        graph.initializer.extend([_const(f"{p}_eps", epsilon)])
        replaced[id(node)] = [
            # A shape-preserving Reshape, so that the layer's input has one consumer: ONNX Runtime fuses an int8
            # graph's DequantizeLinear-Conv-QuantizeLinear into QLinearConv only where the Q's DequantizeLinear
            # feeds one node (it converts that Q/DQ pair to uint8 as the conv's input already is; measured faster).
            helper.make_node("Reshape", [node.input[0], "stats_same"], [x]),
            helper.make_node("ReduceMean", [x, "stats_axes"], [f"{p}_mean4"], keepdims=1),
            helper.make_node("Sub", [x, f"{p}_mean4"], [f"{p}_centred"]),
            helper.make_node("Mul", [f"{p}_centred", f"{p}_centred"], [f"{p}_square"]),
            helper.make_node("ReduceMean", [f"{p}_square", "stats_axes"], [f"{p}_var4"], keepdims=1),
            helper.make_node("Add", [f"{p}_var4", f"{p}_eps"], [f"{p}_ve"]),
            helper.make_node("Sqrt", [f"{p}_ve"], [f"{p}_sd"]),
            helper.make_node("Div", [f"{p}_centred", f"{p}_sd"], [f"{p}_norm"]),
            helper.make_node("Reshape", [node.input[1], "stats_shape"], [f"{p}_scale"]),
            helper.make_node("Reshape", [node.input[2], "stats_shape"], [f"{p}_bias"]),
            helper.make_node("Mul", [f"{p}_norm", f"{p}_scale"], [f"{p}_scaled"]),
            helper.make_node("Add", [f"{p}_scaled", f"{p}_bias"], [node.output[0]]),
            helper.make_node("Reshape", [f"{p}_mean4", "stats_flat"], [f"{p}_mean"]),
            helper.make_node("Reshape", [f"{p}_var4", "stats_flat"], [f"{p}_var"]),
        ]
        parts += [f"{p}_mean", f"{p}_var"]
    nodes = [n for node in graph.node for n in replaced.get(id(node), [node])]
    nodes.append(helper.make_node("Concat", parts, [STATS], axis=1))
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.output[:]
    graph.output.extend([helper.make_tensor_value_info(STATS, TensorProto.FLOAT, [1, 2 * sum(c for _, c in layers)])])
    prune(model.graph)
    return _with_role(model, "stats", [c for _, c in layers], single_sha)


def apply_graph(single: onnx.ModelProto, single_sha: str = "") -> onnx.ModelProto:
    """(``image``, [``style``,] ``in_stats``) -> ``stylized``: each InstanceNorm normalises with the given
    statistics."""
    model = onnx.ModelProto()
    model.CopyFrom(single)
    graph = model.graph
    layers = norm_layers(model)
    total = 2 * sum(c for _, c in layers)
    graph.input.extend([helper.make_tensor_value_info(STATS, TensorProto.FLOAT, ["batch", total])])
    graph.initializer.extend([_const("apply_axes1", [1]), _const("apply_axes23", [2, 3]),
                              _const("apply_shape", [1, -1, 1, 1])])
    replaced, offset = {}, 0
    for i, (node, channels) in enumerate(layers):
        x, p = node.input[0], f"apply{i}"
        epsilon = next((a.f for a in node.attribute if a.name == "epsilon"), 1e-5)
        graph.initializer.extend([_const(f"{p}_start_m", [offset]), _const(f"{p}_end_m", [offset + channels]),
                                  _const(f"{p}_end_v", [offset + 2 * channels]), _const(f"{p}_eps", epsilon)])
        # The scale folds into one per-channel gain on a [1, C, 1, 1] tensor, so a feature map takes a Sub, a Mul
        # and an Add (the Div spelling cost up to 9% per tile on an int8 graph). The mean is subtracted before the
        # gain multiplies: folding it into the shift as well would save the Sub, but where a channel is flat its
        # gain is 1/sqrt(eps), and x * gain - mean * gain then grows rounding noise layer by layer (a constant
        # photo came out as infinities).
        new = [
            helper.make_node("Slice", [STATS, f"{p}_start_m", f"{p}_end_m", "apply_axes1"], [f"{p}_m2"]),
            helper.make_node("Slice", [STATS, f"{p}_end_m", f"{p}_end_v", "apply_axes1"], [f"{p}_v2"]),
            helper.make_node("Unsqueeze", [f"{p}_m2", "apply_axes23"], [f"{p}_m"]),
            helper.make_node("Unsqueeze", [f"{p}_v2", "apply_axes23"], [f"{p}_v"]),
            helper.make_node("Add", [f"{p}_v", f"{p}_eps"], [f"{p}_ve"]),
            helper.make_node("Sqrt", [f"{p}_ve"], [f"{p}_sd"]),
            helper.make_node("Reshape", [node.input[1], "apply_shape"], [f"{p}_scale"]),
            helper.make_node("Reshape", [node.input[2], "apply_shape"], [f"{p}_bias"]),
            helper.make_node("Div", [f"{p}_scale", f"{p}_sd"], [f"{p}_gain"]),
            helper.make_node("Sub", [x, f"{p}_m"], [f"{p}_centred"]),
            helper.make_node("Mul", [f"{p}_centred", f"{p}_gain"], [f"{p}_scaled"]),
            helper.make_node("Add", [f"{p}_scaled", f"{p}_bias"], [node.output[0]]),
        ]
        replaced[id(node)] = new
        offset += 2 * channels
    nodes = [n for node in graph.node for n in replaced.get(id(node), [node])]
    del graph.node[:]
    graph.node.extend(nodes)
    return _with_role(model, "apply", [c for _, c in layers], single_sha)


def write_companions(single_path: Path, save: Callable[[onnx.ModelProto, Path], None]) -> dict[str, Path]:
    """The statistics and apply graphs of the exported ``single_path``, saved (atomically, by ``save``) in its
    tiled/ folder; ones already made from this very file by this surgery are kept."""
    single, digest = onnx.load(str(single_path)), sha256_file(single_path)
    written = {}
    for role, make in (("stats", stats_graph), ("apply", apply_graph)):
        dest = companion_path(single_path, role)
        if not _made_from(dest, digest, role):
            dest.parent.mkdir(parents=True, exist_ok=True)
            save(make(single, digest), dest)
        written[role] = dest
    return written


def _made_from(path: Path, digest: str, role: str) -> bool:
    try:
        meta = onnx_metadata(path)
    except StylecastError:  # missing or unreadable: made again
        return False
    return (meta.get(GRAPH_KEY) == role and meta.get(SINGLE_SHA_KEY) == digest
            and meta.get(GRAPH_VERSION_KEY) == GRAPH_VERSION)
