"""Decision logic on hand-built inputs: which compressed student is kept, when an export is reused, and the
pure pieces of the int8 search. Fast: no training, no export, no subprocess."""

from __future__ import annotations

import json
from importlib.metadata import version

import onnx
import pytest
from onnx import TensorProto, helper
from PIL import Image

from stylecast.compress.pipeline import select
from stylecast.compress.students import TARGET, verdict
from stylecast.export import precisions, to_int8
from stylecast.export.pipeline import is_current
from stylecast.export.precisions import Int8Settings
from stylecast.runtime.artifacts import sha256_file

# ---------------------------------------------------------------- compress: per-student verdict and selection

TEACHER = {"gflops": {"256": 20.0, "512": 80.0, "1080p": 630.0}, "ssim": 1.0, "psnr": 99.0,
           "style_loss": 2.0, "content_loss": 4.0}


def _student(gflops_512: float, ssim: float, style_loss: float = 2.0, content_loss: float = 4.0,
             ms: float | None = None) -> dict:
    """A student row as evaluate() builds it: cost, deployed latency (default: 6 ms per GFLOP) and quality
    numbers, then the verdict merged in."""
    row = {"gflops": {"256": gflops_512 / 4, "512": gflops_512, "1080p": gflops_512 * 7.9}, "ssim": ssim,
           "psnr": 30.0, "style_loss": style_loss, "content_loss": content_loss, "int8_passed": True,
           "latency_ms": {"ORT fp32": 20.0 * gflops_512, "OpenVINO int8": ms or 6.0 * gflops_512}}
    row.update(verdict(row, TEACHER))
    return row


def _rows(**students: dict) -> dict:
    return {"teacher": TEACHER, **students}


def test_target_is_the_issues_bar():
    assert TARGET == {"flops_ratio": 3.5, "ssim": 0.90, "style_delta": 0.15}


def test_verdict_of_a_student_meeting_every_target():
    row = _student(20.0, ssim=0.95, style_loss=2.2, content_loss=5.0)
    assert row["meets"] == {"flops_ratio": True, "ssim": True, "style_delta": True}
    assert row["meets_target"] is True
    assert row["flops_ratio"] == 4.0
    assert row["style_delta"] == pytest.approx(0.1)
    assert row["content_delta"] == pytest.approx(0.25)


def test_style_delta_bound_is_the_same_both_ways():
    assert _student(20.0, ssim=0.95, style_loss=2.3)["meets"]["style_delta"]  # +15%
    assert _student(20.0, ssim=0.95, style_loss=1.7)["meets"]["style_delta"]  # -15% (float: -0.15000000000000002)


def test_verdict_thresholds_are_inclusive_for_flops_and_ssim():
    row = _student(80.0 / 3.5, ssim=0.90)  # exactly 3.5x fewer FLOPs, SSIM exactly at the bar
    assert row["flops_ratio"] == 3.5 and row["meets"]["flops_ratio"] and row["meets"]["ssim"]
    assert row["meets_target"] is True


@pytest.mark.parametrize(("gflops_512", "ssim", "style_loss", "failed"), [
    (30.0, 0.95, 2.0, "flops_ratio"),  # 2.67x fewer FLOPs
    (20.0, 0.89, 2.0, "ssim"),
    (20.0, 0.95, 2.4, "style_delta"),  # +20% style loss
    (20.0, 0.95, 1.6, "style_delta"),  # -20%: the check is two-sided (|delta| <= 15%)
])
def test_verdict_names_the_one_failed_check(gflops_512, ssim, style_loss, failed):
    row = _student(gflops_512, ssim, style_loss)
    assert row["meets_target"] is False
    assert [k for k, ok in row["meets"].items() if not ok] == [failed]


def test_verdict_reports_signed_style_and_content_deltas():
    row = _student(20.0, ssim=0.95, style_loss=1.6, content_loss=3.0)
    assert row["style_delta"] == pytest.approx(-0.2) and row["content_delta"] == pytest.approx(-0.25)


def test_select_keeps_the_passing_student_fastest_on_its_deployed_engine_not_the_fewest_flops():
    rows = _rows(big=_student(22.0, ssim=0.99, ms=100.0), small=_student(16.0, ssim=0.91, ms=140.0),
                 mid=_student(19.0, ssim=0.95, ms=120.0))
    assert all(rows[k]["meets_target"] for k in ("big", "small", "mid"))
    assert select(rows, "teacher") == "big"


def test_select_never_returns_the_teacher():
    rows = {"t": {**TEACHER, "gflops": {"256": 0.1, "512": 0.1, "1080p": 0.1}}, "w16": _student(20.0, ssim=0.95)}
    assert select(rows, "t") == "w16"


def test_select_skips_a_cheaper_student_failing_ssim():
    rows = _rows(cheap=_student(10.0, ssim=0.85), ok=_student(20.0, ssim=0.92))
    assert not rows["cheap"]["meets_target"] and rows["ok"]["meets_target"]
    assert select(rows, "teacher") == "ok"


@pytest.mark.parametrize("style_loss", [2.5, 1.5])  # +25% and -25% of the teacher's style loss
def test_select_skips_a_cheaper_better_looking_student_failing_style_delta(style_loss):
    rows = _rows(cheap=_student(10.0, ssim=0.99, style_loss=style_loss), ok=_student(20.0, ssim=0.92))
    assert rows["cheap"]["meets"] == {"flops_ratio": True, "ssim": True, "style_delta": False}
    assert select(rows, "teacher") == "ok"


def test_select_when_none_passes_prefers_likeness_among_students_cheap_enough():
    """Documented fallback: the highest SSIM of the students with >= 3.5x fewer FLOPs, even if a dearer one
    looks more like the teacher."""
    rows = _rows(dear=_student(40.0, ssim=0.99), cheap_a=_student(20.0, ssim=0.85),
                 cheap_b=_student(15.0, ssim=0.88))
    assert not any(rows[k]["meets_target"] for k in ("dear", "cheap_a", "cheap_b"))
    assert select(rows, "teacher") == "cheap_b"


def test_select_fallback_counts_the_checks_met_before_ssim():
    rows = _rows(off_style=_student(20.0, ssim=0.89, style_loss=4.0), on_style=_student(20.0, ssim=0.86))
    assert rows["off_style"]["style_delta"] == 1.0 and not rows["on_style"]["meets"]["ssim"]
    assert select(rows, "teacher") == "on_style"  # meets FLOPs and style; off_style meets FLOPs only


def test_select_when_no_student_is_cheap_enough_takes_the_most_teacher_like():
    rows = _rows(a=_student(40.0, ssim=0.97), b=_student(30.0, ssim=0.93), c=_student(50.0, ssim=0.80))
    assert not any(rows[k]["meets"]["flops_ratio"] for k in ("a", "b", "c"))
    assert select(rows, "teacher") == "a"


# ---------------------------------------------------------------- export: is an existing ONNX file current?

SHA = "ab" * 32
OURS = version("stylecast")
INT8 = precisions.conversion_settings("int8", Int8Settings())


def _versions(stylecast: str | None = OURS, **tools: str) -> str:
    """The ``versions`` value export writes: JSON of python, stylecast and the export tools, keys sorted."""
    return json.dumps({"python": "3.11.9", "stylecast": stylecast, "torch": "2.13.0", **tools}, sort_keys=True)


def _onnx(path, **meta: str):
    """A one-node Identity graph carrying ``meta`` as metadata_props, the way export stamps its files."""
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 4, 4])
    y = helper.make_tensor_value_info("stylized", TensorProto.FLOAT, [1, 3, 4, 4])
    model = helper.make_model(helper.make_graph([helper.make_node("Identity", ["image"], ["stylized"])], "g", [x], [y]))
    for key, value in sorted(meta.items()):
        model.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(model)
    onnx.save_model(model, str(path))
    return path


def test_is_current_when_checkpoint_conversion_and_stylecast_match(tmp_path):
    path = _onnx(tmp_path / "wave.int8.onnx", source_sha256=SHA, conversion=INT8, versions=_versions())
    assert is_current(path, SHA, INT8)


def test_is_current_for_fp32_which_stores_no_conversion_key(tmp_path):
    path = _onnx(tmp_path / "wave.fp32.onnx", source_sha256=SHA, versions=_versions())
    assert is_current(path, SHA)
    assert is_current(path, SHA, "")
    assert not is_current(path, SHA, INT8)


def test_is_current_ignores_other_tool_versions(tmp_path):
    """Only stylecast's own version is compared: a newer torch or onnx does not force a re-export."""
    path = _onnx(tmp_path / "m.onnx", source_sha256=SHA, conversion=INT8,
                 versions=_versions(torch="9.9.9", onnx="0.0.1", python="3.99.0"))
    assert is_current(path, SHA, INT8)


def test_not_current_for_another_checkpoint(tmp_path):
    path = _onnx(tmp_path / "m.onnx", source_sha256=SHA, conversion=INT8, versions=_versions())
    assert not is_current(path, "cd" * 32, INT8)
    assert not is_current(path, "", INT8)


def test_not_current_for_other_conversion_settings(tmp_path):
    path = _onnx(tmp_path / "m.onnx", source_sha256=SHA, conversion=INT8, versions=_versions())
    for settings in (Int8Settings(target_db=45.0), Int8Settings(method="entropy"), Int8Settings(fp32_leading=2),
                     Int8Settings(count=8), Int8Settings(size=(512, 512))):
        assert not is_current(path, SHA, precisions.conversion_settings("int8", settings)), settings
    assert not is_current(path, SHA, precisions.conversion_settings("fp16", Int8Settings()))
    assert not is_current(path, SHA, "")


def test_not_current_for_another_stylecast_version(tmp_path):
    path = _onnx(tmp_path / "m.onnx", source_sha256=SHA, conversion=INT8, versions=_versions(stylecast=OURS + ".post1"))
    assert not is_current(path, SHA, INT8)
    unknown = _onnx(tmp_path / "unknown.onnx", source_sha256=SHA, conversion=INT8, versions=_versions(stylecast=None))
    assert not is_current(unknown, SHA, INT8)


def test_not_current_without_lineage_metadata(tmp_path):
    assert not is_current(_onnx(tmp_path / "bare.onnx"), SHA)
    assert not is_current(_onnx(tmp_path / "no-versions.onnx", source_sha256=SHA), SHA)


def test_not_current_when_the_file_is_missing(tmp_path):
    assert not is_current(tmp_path / "absent.onnx", SHA, INT8)
    assert not is_current(tmp_path, SHA)  # a directory is not an export either


# ---------------------------------------------------------------- int8: the pure pieces of the search

CONVS = ["conv_in", "down1", "down2", "res1a", "res1b", "up1", "up2", "conv_out"]


@pytest.mark.parametrize(("leading", "kept"), [
    (0, ["conv_out"]),
    (1, ["conv_in", "conv_out"]),
    (3, ["conv_in", "down1", "down2", "conv_out"]),
    (len(CONVS) // 2, ["conv_in", "down1", "down2", "res1a", "conv_out"]),  # the search's largest count
    (len(CONVS), CONVS),  # covering the last conv does not list it twice
])
def test_fp32_convs_are_the_leading_ones_plus_the_last(leading, kept):
    assert to_int8.fp32_convs(CONVS, leading) == kept


def test_int8_methods_tried():
    assert Int8Settings().methods() == ["entropy", "minmax", "percentile"] == sorted(to_int8.METHODS)
    assert Int8Settings(method="percentile").methods() == ["percentile"]


def _photos(folder, *shades: int):
    folder.mkdir(exist_ok=True)
    for i, shade in enumerate(shades):
        Image.new("RGB", (8, 8), (shade, 0, 0)).save(folder / f"p{i}.png")
    return folder


def test_int8_conversion_settings_record_the_search_parameters(tmp_path):
    auto = json.loads(precisions.conversion_settings("int8", Int8Settings()))
    assert auto == {"calibration_photos_sha256": None, "count": 16, "size": [256, 256], "method": "auto",
                    "selection": 4, "fp32_leading": None, "target_db": 40.0, "quantizer": to_int8.QUANTIZER_OPTIONS}
    fixed = Int8Settings(calibration_images=_photos(tmp_path / "calib", 10, 20), method="minmax", fp32_leading=3)
    recorded = json.loads(precisions.conversion_settings("int8", fixed))
    assert recorded == {**auto, "calibration_photos_sha256": recorded["calibration_photos_sha256"],
                        "method": "minmax", "fp32_leading": 3}
    assert len(recorded["calibration_photos_sha256"]) == 64
    assert precisions.conversion_settings("fp32", fixed) == ""


def test_int8_staleness_follows_the_photos_not_the_folder_name(tmp_path):
    """Same folder name, other photos: stale. Same photos in another folder: current. Held-out photos don't count."""
    settings = Int8Settings(calibration_images=_photos(tmp_path / "calib", 10, 20))
    before = precisions.conversion_settings("int8", settings)
    moved = Int8Settings(calibration_images=_photos(tmp_path / "elsewhere", 10, 20))
    assert precisions.conversion_settings("int8", moved) == before
    _photos(tmp_path / "calib", 10, 30)
    assert precisions.conversion_settings("int8", settings) != before
    held_out = frozenset({sha256_file(tmp_path / "calib" / "p1.png")})
    assert precisions.conversion_settings("int8", settings, held_out) == precisions.conversion_settings(
        "int8", Int8Settings(calibration_images=_photos(tmp_path / "one", 10)))


def test_int8_from_before_the_quantizer_options_is_stale(tmp_path):
    """An int8 file quantized with ORT's defaults (INT32 bias DQ, which TensorRT refuses) is exported again."""
    older = json.loads(INT8)
    assert older.pop("quantizer")["QuantizeBias"] is False
    path = _onnx(tmp_path / "wave.int8.onnx", source_sha256=SHA, conversion=json.dumps(older), versions=_versions())
    assert not is_current(path, SHA, INT8)


def test_reused_export_keeps_how_it_was_made(tmp_path):
    """A reused int8 file keeps its search details in the new report; another file's details are not taken."""
    from stylecast.export.pipeline import _how_it_was_made

    dest = tmp_path / "m.int8.onnx"
    dest.write_bytes(b"graph")
    entry = {"file": dest.name, "sha256": sha256_file(dest), "calibration": {"method": "percentile"},
             "fp32_convs": {"leading": 4}, "parity": []}
    (tmp_path / "report.json").write_text(json.dumps({"exports": [entry]}))
    assert _how_it_was_made(tmp_path / "report.json", dest) == {"calibration": {"method": "percentile"},
                                                                 "fp32_convs": {"leading": 4}}
    dest.write_bytes(b"another graph")
    assert _how_it_was_made(tmp_path / "report.json", dest) == {}
    assert _how_it_was_made(tmp_path / "absent.json", dest) == {}
    # A report that lost them (rewritten by an older version): the file's own `made` metadata still says.
    made = {"calibration": {"method": "entropy"}, "fp32_convs": {"leading": 3}}
    _onnx(dest, made=json.dumps(made))
    assert _how_it_was_made(tmp_path / "report.json", dest) == made
