"""Does TensorRT's ONNX parser accept this graph? Checked on CPU against the parser's documented constraints.

Sources: onnx-tensorrt's ``docs/operators.md`` (10.1 GA table for 10.0-10.3; 10.15 GA table for later 10.x) and
``docs/Changelog.md`` (ops added per release), NVIDIA's "ONNX Opset Guide" for TensorRT 11 (opset up to 25), and
the TensorRT developer guide on explicit quantization and strongly typed networks.

What it cannot prove: which kernels TensorRT picks, the numbers they produce, and how fast the engine runs. Only
``stylecast build-engine`` on the target GPU (and ``make gpu-check``) can show those.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import numpy_helper, shape_inference

from stylecast.runtime.backends.tensorrt import ENGINE_PROFILE, Profile, version_tuple
from stylecast.runtime.errors import StylecastError

OPERATORS_MD = "onnx-tensorrt docs/operators.md"
CHANGELOG_MD = "onnx-tensorrt docs/Changelog.md"
QUANT_GUIDE = "TensorRT developer guide, explicit quantization"
TYPING_GUIDE = "TensorRT developer guide, strongly typed networks"

FLOATS = ("FP32", "FP16", "BF16")
INTS = ("INT32", "INT64")
_UNARY = FLOATS
_NUMERIC = FLOATS + INTS
_ANY = FLOATS + INTS + ("BOOL",)
# The 10.1 GA operator table (10.2 and 10.3 add no operator: Changelog.md): op -> the input types it takes.
BASE_OPERATORS: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(("And", "Not", "Or", "Xor"), ("BOOL",)),
    **dict.fromkeys(("DeformConv", "GridSample", "Mish", "NonMaxSuppression", "NonZero", "RoiAlign"),
                    ("FP32", "FP16")),
    **dict.fromkeys((
        "Acos", "Acosh", "Asin", "Asinh", "Atan", "Atanh", "AveragePool", "BatchNormalization", "Ceil", "Celu",
        "Clip", "Conv", "ConvTranspose", "Cos", "Cosh", "CumSum", "Dropout", "Einsum", "Elu", "Erf", "Exp", "Floor",
        "GRU", "Gemm", "GlobalAveragePool", "GlobalLpPool", "GlobalMaxPool", "GroupNormalization", "HardSigmoid",
        "HardSwish", "Hardmax", "ImageScaler", "InstanceNormalization", "IsInf", "LRN", "LSTM", "LayerNormalization",
        "LeakyRelu", "Log", "LogSoftmax", "LpNormalization", "LpPool", "MatMul", "MaxPool",
        "MeanVarianceNormalization", "PRelu", "ParametricSoftplus", "Pow", "QuantizeLinear", "RNN", "RandomNormal",
        "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Reciprocal", "Resize", "Round", "ScaledTanh",
        "Scan", "Selu", "Sigmoid", "Sin", "Sinh", "Softmax", "Softplus", "Softsign", "Sqrt", "Tan", "Tanh",
        "ThresholdedRelu", "Upsample"), _UNARY),
    **dict.fromkeys((
        "Abs", "Add", "ArgMax", "ArgMin", "DepthToSpace", "Div", "Equal", "Greater", "GreaterOrEqual", "IsNaN", "Less",
        "LessOrEqual", "Max", "Mean", "Min", "Mod", "Mul", "Neg", "Pad", "Range", "ReduceL1", "ReduceL2",
        "ReduceLogSum", "ReduceLogSumExp", "ReduceMax", "ReduceMean", "ReduceMin", "ReduceProd", "ReduceSum",
        "ReduceSumSquare", "Relu", "Scatter", "ScatterElements", "ScatterND", "Shrink", "Sign", "SpaceToDepth", "Sub",
        "Sum", "TopK"), _NUMERIC),
    **dict.fromkeys((
        "Concat", "Constant", "ConstantOfShape", "Expand", "EyeLike", "Flatten", "Gather", "GatherElements",
        "GatherND", "Identity", "If", "Loop", "OneHot", "Reshape", "ReverseSequence", "Shape", "Size", "Slice",
        "Split", "Squeeze", "Tile", "Transpose", "Trilu", "Unsqueeze", "Where"), _ANY),
    **dict.fromkeys(("Cast", "CastLike"), (*_ANY, "UINT8")),
    "Gelu": (*_NUMERIC, "INT8"),
    "DequantizeLinear": ("INT8", "FP8", "INT4"),
}
# Added after 10.3 (Changelog.md): windows 10.4, STFT 10.5, Attention 10.14, RoPE/RMSNorm 10.15.
LATER_10X_OPERATORS: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(("BlackmanWindow", "HammingWindow", "HannWindow"), ("FP32", "FP16")),
    "STFT": ("FP32",), "Attention": (*FLOATS, "INT8", "FP8"),
    **dict.fromkeys(("RotaryEmbedding", "RMSNormalization"), FLOATS),
}


@dataclass(frozen=True)
class ParserRelease:
    """One TensorRT release family's ONNX parser, as documented."""

    name: str
    opsets: tuple[int, int]  # the default domain's opset, inclusive
    operators: dict[str, tuple[str, ...]]
    quantized: tuple[str, ...]  # what QuantizeLinear may produce and DequantizeLinear take
    pad_axes_input: bool  # Pad's optional `axes` input (opset 18) is parsed (10.4 on, Changelog.md)
    table: str  # where the operator table comes from


RELEASES = {r.name: r for r in (
    # JetPack 6. "TensorRT 10.0 supports operators in the inclusive range of opset 9 to opset 20" (10.1 GA table).
    ParserRelease("10.3", (9, 20), BASE_OPERATORS, ("INT8", "FP8", "INT4"), False, f"{OPERATORS_MD} 10.1 GA"),
    # "TensorRT 10.15 supports operators in the inclusive range of opset 9 to opset 24"; FP4 since 10.8.
    ParserRelease("10.x", (9, 24), {**BASE_OPERATORS, **LATER_10X_OPERATORS,
                                    "DequantizeLinear": ("INT8", "FP8", "INT4", "FP4")},
                  ("INT8", "FP8", "INT4", "FP4"), True, f"{OPERATORS_MD} 10.15 GA"),
    # ONNX Opset Guide for 11.x: maximum opset 25. No 11.x operator table was available to read here, so the
    # 10.15 one stands in for it (11 dropped weak typing and implicit int8, neither of which is an operator).
    ParserRelease("11", (9, 25), {**BASE_OPERATORS, **LATER_10X_OPERATORS,
                                  "DequantizeLinear": ("INT8", "FP8", "INT4", "FP4")},
                  ("INT8", "FP8", "INT4", "FP4"), True, f"{OPERATORS_MD} 10.15 GA (no 11.x table read)"),
)}

# ONNX element types as the operator table names them.
TYPE_NAMES = {
    onnx.TensorProto.FLOAT: "FP32", onnx.TensorProto.FLOAT16: "FP16", onnx.TensorProto.BFLOAT16: "BF16",
    onnx.TensorProto.DOUBLE: "FP32",  # "limited support": the parser casts DOUBLE down to FLOAT
    onnx.TensorProto.INT8: "INT8", onnx.TensorProto.UINT8: "UINT8", onnx.TensorProto.INT32: "INT32",
    onnx.TensorProto.INT64: "INT64", onnx.TensorProto.BOOL: "BOOL", onnx.TensorProto.INT4: "INT4",
    onnx.TensorProto.FLOAT8E4M3FN: "FP8", onnx.TensorProto.FLOAT4E2M1: "FP4",
}
# Inputs that must share one floating type; the others (Resize's roi/scales, Q/DQ's scale vs data) are typed
# by the ONNX spec itself. Default: every floating input of the node.
SAME_TYPE_INPUTS = {"Resize": (0,), "DequantizeLinear": (), "QuantizeLinear": (0, 1), "Cast": (), "CastLike": ()}
WEIGHT_AXIS = {"Conv": 0, "ConvTranspose": 1}  # the output-channel axis of each op's weight


def release_for(version: str) -> ParserRelease:
    """The table for a TensorRT version string: "10.3", "10.x", "11", or an installed one such as "10.7.0"."""
    if version in RELEASES:
        return RELEASES[version]
    parsed = version_tuple(version)
    if parsed[:1] == (10,):
        return RELEASES["10.3" if parsed <= (10, 3, 999) else "10.x"]
    if parsed[:1] == (11,):
        return RELEASES["11"]
    raise StylecastError(f"TensorRT {version}: no parser table; choose from {', '.join(RELEASES)}")


@dataclass(frozen=True)
class Violation:
    node: str
    op: str
    rule: str
    source: str

    def line(self) -> str:
        return f"{self.node} ({self.op}): {self.rule} [{self.source}]"


@dataclass
class _Graph:
    """The graph's tensors after ONNX shape inference: element types and constant values by name."""

    model: onnx.ModelProto
    types: dict[str, str] = field(default_factory=dict)
    constants: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        graph = self.model.graph
        for info in (*graph.input, *graph.output, *graph.value_info):
            self.types[info.name] = TYPE_NAMES.get(info.type.tensor_type.elem_type, "OTHER")
        for tensor in graph.initializer:
            self.types[tensor.name] = TYPE_NAMES.get(tensor.data_type, "OTHER")
            self.constants[tensor.name] = numpy_helper.to_array(tensor)
        for node in graph.node:
            if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
                tensor = node.attribute[0].t
                self.types[node.output[0]] = TYPE_NAMES.get(tensor.data_type, "OTHER")
                self.constants[node.output[0]] = numpy_helper.to_array(tensor)

    def type_of(self, name: str) -> str | None:
        return self.types.get(name) if name else None


def _attribute(node: onnx.NodeProto, name: str, default: int) -> int:
    return next((a.i for a in node.attribute if a.name == name), default)


def _check_types(node: onnx.NodeProto, graph: _Graph, release: ParserRelease) -> Iterable[Violation]:
    name = node.name or node.output[0]
    first = graph.type_of(node.input[0]) if node.input else None
    allowed = release.operators[node.op_type]
    if first is not None and first not in allowed and node.op_type != "DequantizeLinear":  # see _check_qdq
        yield Violation(name, node.op_type, f"input type {first} not in {', '.join(allowed)}",
                        f"{release.table}, Supported Types")
    indices = SAME_TYPE_INPUTS.get(node.op_type, range(len(node.input)))
    floats = {graph.type_of(node.input[i]) for i in indices if i < len(node.input)} & set(FLOATS)
    if len(floats) > 1:
        yield Violation(name, node.op_type, f"mixed input types {'/'.join(sorted(floats))} without an explicit Cast",
                        TYPING_GUIDE)


def _zero_point_zero(node: onnx.NodeProto, graph: _Graph) -> bool:
    """True when the zero point is absent (and the type comes from elsewhere) or an all-zero constant."""
    if len(node.input) < 3 or not node.input[2]:
        return True
    values = graph.constants.get(node.input[2])
    return values is not None and not np.any(values.astype(np.float64))


def _check_qdq(node: onnx.NodeProto, graph: _Graph, release: ParserRelease,
               consumers: dict[str, list[tuple[onnx.NodeProto, int]]]) -> Iterable[Violation]:
    name = node.name or node.output[0]
    quantized = graph.type_of(node.output[0] if node.op_type == "QuantizeLinear" else node.input[0])
    if quantized not in release.quantized:
        yield Violation(name, node.op_type, f"quantized type {quantized} (TensorRT takes "
                        f"{', '.join(release.quantized)}; INT32 bias DQ comes from ORT's QuantizeBias=True)",
                        f"{release.table}, {node.op_type}")
    if not _zero_point_zero(node, graph):
        yield Violation(name, node.op_type, "zero point is not 0 (TensorRT quantizes symmetrically)",
                        f"{release.table}, {node.op_type} restrictions")
    scale = graph.constants.get(node.input[1])
    if scale is None or scale.size <= 1:
        return
    axis = _attribute(node, "axis", 1)
    if node.op_type == "QuantizeLinear" or node.input[0] not in graph.constants:
        yield Violation(name, node.op_type, "per-channel scales on an activation (TensorRT quantizes activations "
                        "per tensor)", QUANT_GUIDE)
        return
    for consumer, index in consumers.get(node.output[0], []):
        expected = WEIGHT_AXIS.get(consumer.op_type)
        if index == 1 and expected is not None and axis % 4 != expected:
            yield Violation(name, node.op_type, f"per-channel axis {axis} for {consumer.op_type} weights; TensorRT "
                            f"needs the output-channel axis {expected}", QUANT_GUIDE)


def _check_io(model: onnx.ModelProto, profile: Profile) -> Iterable[Violation]:
    for info in (*model.graph.input, *model.graph.output):
        dims = info.type.tensor_type.shape.dim
        unnamed = [i for i, d in enumerate(dims) if not d.dim_param and not d.HasField("dim_value")]
        if unnamed:
            yield Violation(info.name, "graph I/O", f"dynamic dimension(s) {unnamed} have no name",
                            "TensorRT developer guide, dynamic shapes")
    first = model.graph.input[0]
    dims = first.type.tensor_type.shape.dim
    for axis, d in enumerate(dims):
        if d.HasField("dim_value") and not profile.min[axis] == profile.max[axis] == d.dim_value:
            yield Violation(first.name, "graph input", f"dimension {axis} is fixed at {d.dim_value} but the profile "
                            f"spans {profile.min[axis]}..{profile.max[axis]}", "TensorRT developer guide, "
                            "optimization profiles")
    for end in ("min", "max"):
        shape = getattr(profile, end)
        if shape[2] != shape[3]:
            yield Violation(first.name, "profile", f"{end} {shape[2]}x{shape[3]} (HxW) does not cover portrait and "
                            f"landscape alike; use equal height and width", "stylecast: photos come both ways")


def check_model(model: onnx.ModelProto, release: ParserRelease, profile: Profile) -> list[Violation]:
    """Every documented constraint that ``model`` breaks for ``release`` with ``profile``."""
    try:
        onnx.checker.check_model(model)
        model = shape_inference.infer_shapes(model, strict_mode=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as error:
        first_line = str(error).strip().splitlines()[0]
        return [Violation("graph", "onnx.checker", f"invalid ONNX: {first_line}", "ONNX spec")]
    violations = []
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    low, high = release.opsets
    if opset is None or not low <= opset <= high:
        violations.append(Violation("graph", "opset_import", f"opset {opset} outside the parser's {low}-{high}",
                                    release.table))
    graph = _Graph(model)
    consumers: dict[str, list[tuple[onnx.NodeProto, int]]] = {}
    for node in model.graph.node:
        for index, tensor in enumerate(node.input):
            consumers.setdefault(tensor, []).append((node, index))
    for node in model.graph.node:
        name = node.name or node.output[0]
        if node.domain not in ("", "ai.onnx"):
            violations.append(Violation(name, f"{node.domain}.{node.op_type}", "custom-domain op (needs a plugin)",
                                        release.table))
            continue
        if node.op_type not in release.operators:
            violations.append(Violation(name, node.op_type, f"not supported by TensorRT {release.name}'s parser",
                                        release.table))
            continue
        violations += _check_types(node, graph, release)
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            violations += _check_qdq(node, graph, release, consumers)
        if node.op_type == "Pad" and len(node.input) > 3 and node.input[3] and not release.pad_axes_input:
            violations.append(Violation(name, "Pad", f"the `axes` input is parsed from 10.4 on, not by "
                                        f"{release.name}", f"{CHANGELOG_MD} 10.4"))
    return violations + list(_check_io(model, profile))


def _load(path: Path) -> onnx.ModelProto:
    """The ONNX file; an unreadable one is a user error naming it."""
    try:
        return onnx.load(str(path))
    except (OSError, DecodeError) as error:
        raise StylecastError(f"{path}: not a readable ONNX file ({type(error).__name__}); "
                             "give a model written by `stylecast export`") from error


def check_file(path: Path, release: ParserRelease, profile: Profile) -> list[Violation]:
    """``check_model`` on an ONNX file."""
    return check_model(_load(path), release, profile)


def check_releases(path: Path, profile: Profile | None = None) -> dict[str, list[str]]:
    """The violations of ``path`` for every release family (``stylecast export`` records them per precision),
    against build-engine's default profile unless one is given."""
    profile = profile or Profile.parse(ENGINE_PROFILE["min"], ENGINE_PROFILE["opt"], ENGINE_PROFILE["max"])
    model = _load(path)  # read once for every release
    return {name: [v.line() for v in check_model(model, release, profile)] for name, release in RELEASES.items()}
