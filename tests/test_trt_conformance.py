"""The TensorRT conformance check on small hand-built graphs: each rule passes a good graph and names the node of a
bad one. The exported models themselves are checked by `stylecast export` (see test_precision.py)."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from stylecast.export.trt_conformance import RELEASES, check_model, release_for
from stylecast.runtime.backends.tensorrt import ENGINE_PROFILE, Profile
from stylecast.runtime.errors import StylecastError
from tests.conftest import run_cli

PROFILE = Profile.parse(ENGINE_PROFILE["min"], ENGINE_PROFILE["opt"], ENGINE_PROFILE["max"])
DYNAMIC = ["batch", 3, "height", "width"]


def conv_model(opset: int = 18, input_dims: list | None = None) -> onnx.ModelProto:
    """image -> Conv(3->4, bias) -> Relu -> Conv(4->3, bias) -> stylized, with named dynamic dims."""
    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array(rng.normal(size=shape).astype(np.float32), name) for name, shape in
               (("w1", (4, 3, 3, 3)), ("b1", (4,)), ("w2", (3, 4, 3, 3)), ("b2", (3,)))]
    nodes = [helper.make_node("Conv", ["image", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
             helper.make_node("Conv", ["r1", "w2", "b2"], ["stylized"], name="conv2", pads=[1, 1, 1, 1])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("image", TensorProto.FLOAT, input_dims or DYNAMIC)],
                              [helper.make_tensor_value_info("stylized", TensorProto.FLOAT, DYNAMIC)], weights)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=9)


def quantized(tmp_path, **options) -> onnx.ModelProto:
    """``conv_model`` through ONNX Runtime's static Q/DQ quantizer with ``options`` as its extra_options."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{"image": np.random.default_rng(i).uniform(0, 255, (1, 3, 16, 16)).astype(np.float32)}
                                 for i in range(2)])

        def get_next(self) -> dict | None:
            return next(self.batches, None)

    source, dest = tmp_path / "fp32.onnx", tmp_path / "int8.onnx"
    onnx.save(conv_model(), source)
    quantize_static(str(source), str(dest), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, op_types_to_quantize=["Conv"],
                    extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, **options})
    return onnx.load(dest)


def lines(model: onnx.ModelProto, release: str = "10.3", profile: Profile = PROFILE) -> list[str]:
    return [v.line() for v in check_model(model, RELEASES[release], profile)]


@pytest.mark.parametrize("release", sorted(RELEASES))
def test_plain_conv_graph_conforms_everywhere(release):
    assert lines(conv_model(), release) == []


def test_qdq_without_bias_quantization_conforms(tmp_path):
    model = quantized(tmp_path, QuantizeBias=False)
    assert sum(n.op_type == "DequantizeLinear" for n in model.graph.node) >= 4
    assert lines(model) == []


def test_ort_default_int32_bias_dq_is_refused_by_node(tmp_path):
    model = quantized(tmp_path)  # ORT's default QuantizeBias=True
    bias_dqs = [n.name for n in model.graph.node if n.op_type == "DequantizeLinear" and "b1" in n.input[0]]
    found = lines(model)
    assert bias_dqs and any(bias_dqs[0] in line and "INT32" in line for line in found), found


def test_opset_beyond_the_release_is_refused():
    model = conv_model(opset=21)
    assert any("opset 21 outside the parser's 9-20" in line for line in lines(model, "10.3"))
    assert lines(model, "10.x") == []


def test_unsupported_and_custom_ops_are_named():
    model = conv_model()
    model.graph.node.append(helper.make_node("Unique", ["stylized"], ["u"], name="uniq"))
    model.graph.node.append(helper.make_node("FusedConv", ["stylized"], ["f"], name="fused", domain="com.microsoft"))
    model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    found = lines(model)
    assert any(line.startswith("uniq (Unique): not supported") for line in found), found
    assert any(line.startswith("fused (com.microsoft.FusedConv): custom-domain op") for line in found), found


def test_mixed_float_inputs_without_cast_are_refused():
    model = conv_model()
    half = numpy_helper.from_array(np.ones((1, 3, 1, 1), np.float16), "half")
    model.graph.initializer.append(half)
    model.graph.node.append(helper.make_node("Add", ["stylized", "half"], ["sum"], name="mixed_add"))
    model.graph.output.append(helper.make_tensor_value_info("sum", TensorProto.FLOAT, DYNAMIC))
    found = lines(model)
    assert any(line.startswith("mixed_add (Add): mixed input types FP16/FP32") for line in found), found


def test_nonzero_zero_point_and_weight_axis_are_refused(tmp_path):
    model = quantized(tmp_path, QuantizeBias=False)
    weight_dq = next(n for n in model.graph.node if n.op_type == "DequantizeLinear" and "w1" in n.input[0])
    for attribute in weight_dq.attribute:
        if attribute.name == "axis":
            attribute.i = 1
    zero_point = next(t for t in model.graph.initializer if t.name == weight_dq.input[2])
    zero_point.CopyFrom(numpy_helper.from_array(np.full(numpy_helper.to_array(zero_point).shape, 3, np.int8),
                                                zero_point.name))
    found = [line for line in lines(model) if line.startswith(weight_dq.name)]
    assert any("zero point is not 0" in line for line in found), found
    assert any("per-channel axis 1 for Conv weights" in line for line in found), found


def test_unnamed_dynamic_dims_and_one_sided_profiles_are_refused():
    model = conv_model(input_dims=["batch", 3, None, "width"])
    assert any("image (graph I/O): dynamic dimension(s) [2] have no name" in line for line in lines(model))
    landscape_only = Profile.parse("1x3x64x64", "1x3x512x512", "1x3x1080x1920")
    assert any("does not cover portrait and landscape" in line for line in lines(conv_model(), profile=landscape_only))


def test_fixed_dims_must_match_the_profile():
    found = lines(conv_model(input_dims=[1, 3, 256, 256]))
    assert any("dimension 2 is fixed at 256" in line for line in found), found


def test_release_for_installed_versions():
    assert release_for("10.3.0.30").name == "10.3" and release_for("10.7.0").name == "10.x"
    assert release_for("11.0.0").name == "11" and release_for("10.x").name == "10.x"
    with pytest.raises(StylecastError, match="no parser table"):
        release_for("8.6.1")


def test_check_trt_cli_one_line_per_violation_and_exit_code(tmp_path):
    good, bad = tmp_path / "good.onnx", tmp_path / "bad.onnx"
    onnx.save(conv_model(), good)
    onnx.save(quantized(tmp_path), bad)
    ok = run_cli("check-trt", str(good), "--trt", "10.x")
    assert ok.returncode == 0 and "conforms to TensorRT 10.x" in ok.stdout
    refused = run_cli("check-trt", str(good), str(bad))
    assert refused.returncode == 1, refused.stderr
    violations = [line for line in refused.stdout.splitlines() if line.startswith(str(bad))]
    assert violations and all("INT32" in line and "[onnx-tensorrt docs/operators.md" in line for line in violations)
    missing = run_cli("check-trt", str(tmp_path / "nope.onnx"))
    assert missing.returncode == 2 and "no such file" in missing.stderr and "Traceback" not in missing.stderr
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a protobuf at all" * 3)
    unreadable = run_cli("check-trt", str(garbage))
    assert unreadable.returncode == 2 and "not a readable ONNX file" in unreadable.stderr


def test_export_records_parser_conformance_per_release(tiny_onnx):
    report = json.loads((tiny_onnx.parent / "report.json").read_text())
    assert report["exports"][0]["tensorrt_parser"] == dict.fromkeys(RELEASES, "conforms")
