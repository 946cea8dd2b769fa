"""The one table of file kinds and precisions, and that export, backends, the gate and TensorRT read it."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from stylecast.benchmarks import gate
from stylecast.export.pipeline import onnx_path
from stylecast.runtime import formats
from stylecast.runtime.backends import load_backend
from stylecast.runtime.errors import StylecastError


def test_precision_rows():
    assert formats.EXPORTED == ("fp32", "fp16", "int8")
    floors = {name: (p.psnr_floor_db, p.ssim_floor) for name, p in formats.PRECISIONS.items()}
    assert floors == {"fp32": (60.0, 0.0), "fp16": (45.0, 0.0), "int8": (35.0, 0.97), "bf16": (30.0, 0.97)}
    assert formats.precision("int8").onnx_name("wave") == "wave.int8.onnx"
    with pytest.raises(StylecastError, match="unknown precision 'fp8'; choose from fp32, fp16, int8, bf16"):
        formats.precision("fp8")


def test_file_kinds_by_suffix():
    assert formats.kind_of(".ONNX").backend == "onnxruntime"
    assert formats.kind_of(".plan").name == formats.kind_of(".engine").name == "tensorrt-engine"
    assert formats.kind_of(".safetensors").backend is None and formats.kind_of(".png") is None
    assert formats.FILE_KINDS["onnx"].triton == ("onnxruntime_onnx", "model.onnx")


def test_export_paths_come_from_the_table(tmp_path):
    assert onnx_path(tmp_path, "wave", "fp16") == tmp_path / "wave.fp16.onnx"
    with pytest.raises(StylecastError, match="unknown precision"):
        onnx_path(tmp_path, "wave", "fp8")


def test_backend_choice_follows_the_table(tmp_path):
    (tmp_path / "m.safetensors").write_bytes(b"x")
    with pytest.raises(StylecastError, match="no backend for '.safetensors' files with --backend auto"):
        load_backend(tmp_path / "m.safetensors")
    (tmp_path / "m.onnx").write_bytes(b"x")
    with pytest.raises(StylecastError, match="no backend for '.onnx' files with --backend tensorrt"):
        load_backend(tmp_path / "m.onnx", backend="tensorrt")


def test_gate_floors_are_the_table_rows(monkeypatch):
    row = {"variant": "m", "resolution": "64x64", "format": "ONNX Runtime", "precision": "int8", "engine": "CPU",
           "status": "ok", "psnr_min": 36.0, "ssim_min": 0.98}
    assert gate.check_floors({"rows": [row]}) == []
    monkeypatch.setitem(formats.PRECISIONS, "int8", replace(formats.PRECISIONS["int8"], psnr_floor_db=40.0))
    assert [p.kind for p in gate.check_floors({"rows": [row]})] == ["psnr"]


def test_triton_model_names_are_what_export_and_serve_both_use():
    assert formats.triton_model_name(Path("artifacts/wave/wave.fp16.onnx")) == "wave_fp16"
    assert formats.triton_model_name(Path("wave.int8.orin-nano.trt10.3.0.engine")) == "wave_int8_trt10_3_0_orin_nano"
