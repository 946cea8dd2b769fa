"""fp16 and int8 graphs on a tiny net: the precision is in the graph, parity is measured, floors are enforced."""

import json
from dataclasses import replace

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from stylecast.runtime import formats
from stylecast.runtime.artifacts import onnx_metadata, read_metadata
from stylecast.runtime.formats import PRECISIONS
from stylecast.runtime.stylizer import Stylizer

from .conftest import run_cli


@pytest.fixture(scope="session")
def low_precision_export(tmp_path_factory, tiny_checkpoint, photos, calibration_photos):
    out = tmp_path_factory.mktemp("lowp")
    result = run_cli("export", str(tiny_checkpoint), "--out", str(out), "--precision", "fp32,fp16,int8",
                     "--parity-images", str(photos), "--calibration-images", str(calibration_photos),
                     "--calibration-count", "5", "--calibration-resolution", "64x64", "--triton", str(out / "triton"))
    return out, result


def _entry(out, precision):
    report = json.loads((out / "report.json").read_text())
    return next(e for e in report["exports"] if e["precision"] == precision)


def test_every_precision_reports_parity_against_its_floor(low_precision_export):
    out, result = low_precision_export
    failed = []
    for precision in ("fp32", "fp16", "int8"):
        entry = _entry(out, precision)
        assert len({(p["height"], p["width"]) for p in entry["parity"]}) >= 2
        worst = min(p["psnr_min"] for p in entry["parity"])
        worst_ssim = min(p["ssim_min"] for p in entry["parity"])
        assert entry["psnr_floor_db"] == PRECISIONS[precision].psnr_floor_db
        assert entry["ssim_floor"] == PRECISIONS[precision].ssim_floor
        floors = PRECISIONS[precision]
        assert entry["passed"] == (worst >= floors.psnr_floor_db and worst_ssim >= floors.ssim_floor)
        assert read_metadata(out / entry["file"])["precision"] == precision
        if not entry["passed"]:
            failed.append(entry["file"])
    # A floor miss fails the whole export, loudly, after the report is written.
    assert (result.returncode == 2) == bool(failed), result.stderr
    for name in failed:
        assert name in result.stderr and "export check failed" in result.stderr
    assert _entry(out, "fp16")["passed"], "fp16 keeps InstanceNorm in fp32 and must stay within 45 dB"


def test_fp16_graph_is_mixed_with_fp32_io_and_fp32_instance_norm(low_precision_export):
    out, _ = low_precision_export
    model = onnx.load(str(out / "tiny.fp16.onnx"))
    assert [i.type.tensor_type.elem_type for i in (*model.graph.input, *model.graph.output)] == [1, 1]
    half = {t.name for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT16}
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    assert convs and all(n.input[1] in half for n in convs)
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type for v in (*inferred.graph.value_info, *inferred.graph.input)}
    for node in (n for n in model.graph.node if n.op_type == "InstanceNormalization"):
        assert types[node.input[0]] == onnx.TensorProto.FLOAT


def test_int8_graph_is_explicit_symmetric_qdq_with_fp32_instance_norm(low_precision_export):
    out, _ = low_precision_export
    model = onnx.load(str(out / "tiny.int8.onnx"))
    nodes = model.graph.node
    producers = {o: n for n in nodes for o in n.output}
    consumers = {i: n for n in nodes for i in n.input}
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for dq in (n for n in nodes if n.op_type == "DequantizeLinear"):
        zero = inits.get(dq.input[2]) if len(dq.input) > 2 else None
        assert zero is None or not zero.any(), "symmetric: every zero point is 0"
        # int8 only: TensorRT's ONNX parser takes no INT32 DequantizeLinear (ORT's default quantizes conv biases so)
        assert inits.get(dq.input[0], np.zeros(1, np.int8)).dtype == np.int8, dq.name
        if dq.input[0] in inits:  # a weight: one scale per output channel
            assert inits[dq.input[1]].size == inits[dq.input[0]].shape[0] > 1
    quantize = [n for n in nodes if n.op_type == "QuantizeLinear"]
    assert quantize and all(inits[q.input[2]].dtype == np.int8 and not inits[q.input[2]].any() for q in quantize)
    chosen = _entry(out, "int8")["fp32_convs"]
    convs = [n for n in nodes if n.op_type == "Conv"]
    assert chosen["of"] == len(convs) and chosen["names"][-1] == convs[-1].name
    assert chosen["names"] == [c.name for c in convs[:chosen["leading"]]] + [convs[-1].name]
    for conv in convs:
        quantized = conv.name not in chosen["names"]
        # int8 in and out (ONNX Runtime fuses this into QLinearConv), or no Q/DQ at all.
        assert (producers[conv.input[0]].op_type == "DequantizeLinear") == quantized, conv.name
        assert (producers.get(conv.input[1]) is not None) == quantized, conv.name
        assert (consumers[conv.output[0]].op_type == "QuantizeLinear") == quantized, conv.name
    for norm in (n for n in nodes if n.op_type == "InstanceNormalization"):
        assert producers[norm.input[0]].op_type in ("Conv", "DequantizeLinear"), "InstanceNorm runs in fp32"
    assert chosen["leading"] < len(convs) - 1, "some convs are int8"


def test_onnx_runtime_fuses_the_int8_convs_of_every_graph_alike(low_precision_export, tmp_path):
    """The statistics graph's int8 convs run as QLinearConv as the single pass's do (an unfused one was slower)."""
    import onnxruntime as ort

    out, _ = low_precision_export

    def fused(path):
        options = ort.SessionOptions()
        options.optimized_model_filepath = str(tmp_path / f"{path.name}.optimized.onnx")
        options.log_severity_level = 3
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        return sum(n.op_type == "QLinearConv" for n in onnx.load(options.optimized_model_filepath).graph.node)

    single = fused(out / "tiny.int8.onnx")
    assert single > 0
    assert fused(out / "tiled" / "tiny.int8.stats.onnx") == single
    assert fused(out / "tiled" / "tiny.int8.apply.onnx") == single


def test_int8_fp32_convs_and_method_are_chosen_by_measured_parity(low_precision_export):
    out, _ = low_precision_export
    entry = _entry(out, "int8")
    calibration, chosen = entry["calibration"], entry["fp32_convs"]
    search = {int(k): v for k, v in chosen["search_psnr_db"].items()}
    # The search stops at the first count of leading fp32 convs whose best method reaches the target.
    assert sorted(search) == list(range(max(search) + 1))
    assert all(max(v.values()) < chosen["target_db"] for k, v in search.items() if k < max(search))
    if max(search[chosen["leading"]].values()) >= chosen["target_db"]:
        assert chosen["leading"] == max(search)
    else:
        assert max(search[chosen["leading"]].values()) == max(max(v.values()) for v in search.values())
    assert calibration["selection_psnr_db"] == search[chosen["leading"]] and len(search[chosen["leading"]]) == 3
    assert calibration["method"] == max(calibration["selection_psnr_db"], key=calibration["selection_psnr_db"].get)
    assert calibration["images"] == 5 and calibration["size"] == [64, 64]
    # The file carries the same choices, so an export that later reuses it still reports them.
    made = json.loads(onnx_metadata(out / f"{entry['file']}")["made"])
    assert made == {"calibration": calibration, "fp32_convs": chosen}


def test_int8_fixed_fp32_convs_skip_the_search(tiny_checkpoint, photos, calibration_photos, tmp_path):
    result = run_cli("export", str(tiny_checkpoint), "--out", str(tmp_path), "--precision", "int8",
                     "--parity-images", str(photos), "--calibration-images", str(calibration_photos),
                     "--calibration-count", "4", "--calibration-resolution", "48x48", "--int8-method", "minmax",
                     "--int8-fp32-convs", "1", "--allow-below-floor", "int8")
    assert result.returncode == 0, result.stderr
    entry = _entry(tmp_path, "int8")
    assert entry["fp32_convs"]["leading"] == 1 and entry["fp32_convs"]["chosen_by"] == "--int8-fp32-convs"
    assert entry["fp32_convs"]["search_psnr_db"] == {} and entry["calibration"]["method"] == "minmax"
    bad = run_cli("export", str(tiny_checkpoint), "--out", str(tmp_path), "--precision", "int8",
                  "--calibration-images", str(calibration_photos), "--int8-fp32-convs", "some")
    assert bad.returncode == 2 and "--int8-fp32-convs" in bad.stderr and "Traceback" not in bad.stderr


def test_int8_model_runs_through_the_runtime(low_precision_export):
    out, _ = low_precision_export
    stylizer = Stylizer(out / "tiny.int8.onnx")
    rgb = np.random.default_rng(1).integers(0, 255, (45, 38, 3), dtype=np.uint8)
    assert stylizer.precision == "int8" and stylizer(rgb).shape == (45, 38, 3)


def test_int8_refuses_calibrating_on_the_parity_photos(tiny_checkpoint, photos, tmp_path):
    result = run_cli("export", str(tiny_checkpoint), "--out", str(tmp_path), "--precision", "int8",
                     "--parity-images", str(photos), "--calibration-images", str(photos))
    assert result.returncode == 2 and "no calibration photos" in result.stderr and "Traceback" not in result.stderr


def test_int8_without_calibration_photos_names_the_option(tiny_checkpoint, photos, tmp_path):
    result = run_cli("export", str(tiny_checkpoint), "--out", str(tmp_path), "--precision", "int8",
                     "--parity-images", str(photos))
    assert result.returncode == 2 and "--calibration-images" in result.stderr


def test_triton_repository_configs_parse_as_model_config(low_precision_export, tmp_path):
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as pb

    from stylecast.export.triton import export_repository

    out, result = low_precision_export
    repo = out / "triton" if result.returncode == 0 else tmp_path  # a failed export writes no repository
    if result.returncode != 0:
        assert not (out / "triton").exists()
        export_repository(repo, [out / f"tiny.{p}.onnx" for p in ("fp32", "fp16", "int8")])
    written = sorted(p.parent.name for p in repo.glob("*/config.pbtxt"))
    assert written == ["tiny_fp16", "tiny_fp32", "tiny_int8"]
    for name in written:
        config = text_format.Parse((repo / name / "config.pbtxt").read_text(), pb.ModelConfig())
        assert config.name == name and config.platform == "onnxruntime_onnx" and config.max_batch_size > 0
        assert [(t.name, pb.DataType.Name(t.data_type), list(t.dims)) for t in config.input] == [
            ("image", "TYPE_FP32", [3, -1, -1])]
        assert [(t.name, list(t.dims)) for t in config.output] == [("stylized", [3, -1, -1])]
        assert config.HasField("dynamic_batching")
        assert (repo / name / "1" / "model.onnx").stat().st_size > 1000


def test_triton_plan_names_carry_tensorrt_version_and_gpu(tiny_onnx, tmp_path):
    """Plans of two TensorRT releases for one GPU get two models; the engine beside another ONNX is left out."""
    import json
    import shutil

    from stylecast.export.triton import export_repository
    from stylecast.runtime.artifacts import sha256_file

    onnx_path = shutil.copy(tiny_onnx, tmp_path / "tiny.fp32.onnx")
    for version in ("10.3.0", "10.13.0"):
        engine = tmp_path / f"tiny.fp32.orin.trt{version}.engine"
        engine.write_bytes(b"plan")
        sidecar = {"stylecast.format": "tensorrt-engine", "onnx_sha256": sha256_file(onnx_path),
                   "tensorrt_version": version, "gpu_name": "Orin (NVIDIA Jetson AGX Orin)",
                   "profile": {"max": "4x3x1024x1024"}}
        engine.with_name(engine.name + ".json").write_text(json.dumps(sidecar))
    stale = tmp_path / "tiny.fp32.h200.trt10.13.0.engine"
    stale.write_bytes(b"plan")
    stale.with_name(stale.name + ".json").write_text(json.dumps({**sidecar, "onnx_sha256": "0" * 64}))
    written = sorted(p.name for p in export_repository(tmp_path / "repo", [onnx_path]))
    assert written == ["tiny_fp32", "tiny_fp32_trt10_13_0_orin", "tiny_fp32_trt10_3_0_orin"]


def test_floor_miss_fails_unless_explicitly_allowed(tiny_checkpoint, photos, tmp_path, monkeypatch):
    from stylecast.export import pipeline
    from stylecast.runtime.errors import StylecastError

    unreachable = replace(formats.PRECISIONS["fp32"], psnr_floor_db=1000.0)
    monkeypatch.setitem(formats.PRECISIONS, "fp32", unreachable)  # unreachable: every export misses it
    request = pipeline.ExportRequest(tiny_checkpoint, tmp_path / "strict", parity_images=photos, sizes=((40, 40),))
    with pytest.raises(StylecastError, match="export check failed.*tiny.fp32.onnx"):
        pipeline.run_export(request, log=lambda _: None)
    assert not json.loads((tmp_path / "strict" / "report.json").read_text())["exports"][0]["passed"]
    allowed = pipeline.ExportRequest(tiny_checkpoint, tmp_path / "kept", parity_images=photos, sizes=((40, 40),),
                                     allow_below_floor=frozenset({"fp32"}))
    entry = pipeline.run_export(allowed, log=lambda _: None)["exports"][0]
    assert entry["below_target"] and not entry["passed"] and (tmp_path / "kept" / "tiny.fp32.onnx").is_file()
