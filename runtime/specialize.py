"""A multi-style graph held to one style vector: the graph a single-style model of that style would have.

A multi-style export applies each style's affine after its InstanceNorms (which have unit scale and no shift) as a
Mul and an Add over the whole feature map, fed by its ``style`` input through a MatMul per norm; a single-style
export folds the affine into InstanceNormalization's own scale and B. When one style vector holds for a whole run
(``stylize --style``, a video, a benchmark), the affine is a constant: folded back, the two extra passes over
every feature map go, and an engine that fuses a norm's constant affine into its kernel does so again (the general
graph measured up to 1.5x a single-style net's time on one engine).

The surgery is on the proto, in memory, for every exported precision: the part of the graph that depends on the
style alone is evaluated once for the vector, each InstanceNorm's Mul and Add by those values become its scale and
B (through the Cast an fp16 graph keeps behind its fp32 norm), and the style input and whatever only fed the affine
go. Every other node, Q/DQ pair and cast stays as exported.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np

from stylecast.runtime.errors import StylecastError, import_optional
from stylecast.runtime.formats import STYLE

if TYPE_CHECKING:
    from onnx import GraphProto, ModelProto, NodeProto


def _onnx() -> ModuleType:
    return import_optional("onnx", "folding a style into a multi-style graph needs the onnx package: pip install onnx")


def _style_part(graph: GraphProto) -> tuple[list[NodeProto], set[str]]:
    """The nodes that compute from the style and constants alone, and the tensors they make (the style's own
    part). A graph's nodes are in topological order (an ONNX rule), so one pass finds them."""
    constants = {t.name for t in graph.initializer}
    derived, nodes = {STYLE}, []
    for node in graph.node:
        inputs = {name for name in node.input if name}
        if inputs & derived and inputs <= derived | constants:
            nodes.append(node)
            derived.update(node.output)
    return nodes, derived


def _evaluate(model: ModelProto, nodes: list[NodeProto], wanted: list[str], vector: np.ndarray) -> dict[str, np.ndarray]:
    """The style part's ``wanted`` tensors for one row of weights, by ONNX's reference evaluator: a few small
    MatMuls, which need no inference engine."""
    onnx = _onnx()
    from onnx.reference import ReferenceEvaluator

    helper, used = onnx.helper, {name for node in nodes for name in node.input}
    elem = next(i for i in model.graph.input if i.name == STYLE).type.tensor_type.elem_type
    graph = helper.make_graph(nodes, "style_part", [helper.make_tensor_value_info(STYLE, elem, [1, len(vector)])],
                              [helper.make_empty_tensor_value_info(name) for name in wanted],
                              initializer=[t for t in model.graph.initializer if t.name in used])
    part = helper.make_model(graph, opset_imports=model.opset_import, ir_version=model.ir_version)
    return dict(zip(wanted, ReferenceEvaluator(part).run(wanted, {STYLE: vector[None]}), strict=True))


def _constant(graph: GraphProto, name: str) -> np.ndarray:
    """The constant ``name`` as the node reading it sees it: an initializer, through the Cast/Identity nodes a
    precision conversion may put in front."""
    onnx = _onnx()
    found = {t.name: t for t in graph.initializer}
    producers = {out: node for node in graph.node for out in node.output}
    casts = []
    while name not in found and name in producers and producers[name].op_type in ("Cast", "Identity"):
        casts.append(producers[name])
        name = producers[name].input[0]
    if name not in found:
        raise ValueError(f"an InstanceNorm's scale or B ({name}) is not a constant")
    value = onnx.numpy_helper.to_array(found[name])
    for cast in reversed(casts):
        to = next((a.i for a in cast.attribute if a.name == "to"), None)
        value = value if to is None else value.astype(onnx.helper.tensor_dtype_to_np_dtype(to))
    return value


def _per_channel(value: np.ndarray, channels: int, node: NodeProto) -> np.ndarray:
    """A style affine's [1, C, 1, 1] operand as C values; any other shape is not a per-channel affine."""
    try:
        return np.broadcast_to(value, (1, channels, 1, 1))[0, :, 0, 0].astype(np.float64)
    except ValueError:
        raise ValueError(f"{node.name} ({node.op_type}) takes a {list(value.shape)} operand, not one value per "
                         "channel") from None


def _consumers(graph: GraphProto) -> dict[str, list[NodeProto]]:
    found: dict[str, list[NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            found.setdefault(name, []).append(node)
    return found


def _fold_norm(graph: GraphProto, norm: NodeProto, known: dict[str, np.ndarray], consumers: dict[str, list[NodeProto]],
               tag: str) -> list[NodeProto]:
    """Fold the style-fed Mul/Add after ``norm`` (behind its output Cast, if any) into its scale and B; returns the
    nodes folded. The last node kept before them takes over the last one's output name, so every later node reads
    the tensor it read before (and ``consumers``, keyed by the names nodes read, stays true)."""
    onnx = _onnx()
    kept, current = norm, norm.output[0]
    if len(consumers.get(current, [])) == 1 and consumers[current][0].op_type == "Cast":
        kept = consumers[current][0]
        current = kept.output[0]
    scale, bias = _constant(graph, norm.input[1]), _constant(graph, norm.input[2])
    gamma, beta, folded = scale.astype(np.float64), bias.astype(np.float64), []
    while len(consumers.get(current, [])) == 1:
        node = consumers[current][0]
        other = [name for name in node.input if name != current]
        if node.op_type not in ("Mul", "Add") or len(other) != 1 or other[0] not in known:
            break
        value = _per_channel(known[other[0]], len(gamma), node)
        gamma, beta = (gamma * value, beta * value) if node.op_type == "Mul" else (gamma, beta + value)
        folded.append(node)
        current = node.output[0]
    if folded:
        # Named for the model and the vector: an execution provider that keys its cached engines by tensor names alone
        # must never load the engine of a graph folded for another style (or from another model).
        for i, role, value in ((1, "scale", gamma.astype(scale.dtype)), (2, "bias", beta.astype(bias.dtype))):
            norm.input[i] = f"{norm.output[0]}_{role}_{tag}"
            graph.initializer.append(onnx.numpy_helper.from_array(value, norm.input[i]))
        kept.output[0] = folded[-1].output[0]
    return folded


def prune(graph: GraphProto) -> None:
    """Drop the nodes and initializers no graph output depends on any longer (after surgery: here the style's part,
    and a cast that fed only a replaced scale), and the shapes recorded for tensors that are gone."""
    needed = {o.name for o in graph.output}
    kept = []
    for node in reversed(graph.node):
        if any(out in needed for out in node.output):
            kept.append(node)
            needed.update(name for name in node.input if name)
    del graph.node[:]
    graph.node.extend(reversed(kept))
    for tensor in [t for t in graph.initializer if t.name not in needed]:
        graph.initializer.remove(tensor)
    made = needed | {out for node in graph.node for out in node.output}
    for info in [v for v in graph.value_info if v.name not in made]:
        graph.value_info.remove(info)


def specialize(model: ModelProto, style: np.ndarray) -> ModelProto:
    """``model`` with the style vector ``style`` (its weight per style: the row its ``style`` input would take for
    every image) folded into its InstanceNorms, as a new proto without the style input; a graph without a style
    input comes back as it is. Refused (ValueError) where the style reaches anything but an InstanceNorm's affine."""
    if STYLE not in {i.name for i in model.graph.input}:
        return model
    onnx = _onnx()
    vector = np.asarray(style, np.float32).reshape(-1)
    dims = next(i for i in model.graph.input if i.name == STYLE).type.tensor_type.shape.dim
    if len(dims) != 2 or (dims[1].dim_value and dims[1].dim_value != len(vector)):
        raise ValueError(f"a style vector of {len(vector)} weights for a style input of shape "
                         f"{[d.dim_value or d.dim_param for d in dims]}")
    tag = hashlib.sha256(model.SerializeToString(deterministic=True) + vector.tobytes()).hexdigest()[:16]
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    part, derived = _style_part(graph)
    in_part = {id(node) for node in part}  # ``part`` holds the nodes, so their ids stay theirs
    mixed = [node for node in graph.node if id(node) not in in_part and set(node.input) & derived]
    wanted = sorted({name for node in mixed for name in node.input if name in derived})
    if set(wanted) & {o.name for o in graph.output}:
        raise ValueError("a graph output depends on the style alone")
    known = _evaluate(out, part, wanted, vector)
    consumers = _consumers(graph)
    folded = {id(node) for norm in [node for node in graph.node if node.op_type == "InstanceNormalization"]
              for node in _fold_norm(graph, norm, known, consumers, tag)}  # ``mixed`` holds these nodes
    left = [node for node in mixed if id(node) not in folded]
    if left:
        raise ValueError(f"the style reaches {', '.join(f'{n.name} ({n.op_type})' for n in left)} beyond an "
                         "InstanceNorm's affine")
    kept = [node for node in graph.node if id(node) not in folded]
    del graph.node[:]
    graph.node.extend(kept)
    graph.input.remove(next(i for i in graph.input if i.name == STYLE))
    prune(graph)
    return out


def specialized_bytes(path: Path, style: np.ndarray) -> bytes:
    """The graph of ``path`` folded for ``style`` (:func:`specialize`), serialized for an engine to build its
    session from memory without a file of its own."""
    try:
        return specialize(_onnx().load(str(path)), style).SerializeToString()
    except ValueError as exc:
        raise StylecastError(f"{path}: its style cannot be folded into its InstanceNorms ({exc}); re-export it "
                             "with `stylecast export`") from exc
