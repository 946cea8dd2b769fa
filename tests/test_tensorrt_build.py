"""TensorRT engine building and the engine backend: pure parts here, the real thing where TensorRT exists."""

import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest

from stylecast.export import tensorrt_build as tb
from stylecast.runtime.artifacts import sidecar_path
from stylecast.runtime.backends import tensorrt as rt
from stylecast.runtime.backends.tensorrt import check_shape
from stylecast.runtime.errors import StylecastError

from .conftest import run_cli

HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None
TRT_MISSING = ("TensorRT is not installed (it needs an NVIDIA GPU and NVIDIA's package index); "
               "engine build and run are tested where it is")

ORIN = rt.Target("10.3.0", "Orin", "8.7")


def test_parse_profile_and_contains():
    profile = rt.Profile.parse("1x3x64x64", "1x3x512x512", "4x3x1024x1024")
    assert profile.opt == (1, 3, 512, 512)
    assert profile.contains((2, 3, 300, 1000)) and not profile.contains((1, 3, 2048, 64))
    assert profile.as_text() == {"min": "1x3x64x64", "opt": "1x3x512x512", "max": "4x3x1024x1024"}


@pytest.mark.parametrize("bad", ["1x3x64", "1x4x64x64", "1x3x0x64", "ax3x64x64"])
def test_bad_shapes_refused(bad):
    with pytest.raises(StylecastError, match="shape"):
        rt.parse_shape(bad)


def test_profile_must_be_ordered():
    with pytest.raises(StylecastError, match="min <= opt <= max"):
        rt.Profile.parse("1x3x512x512", "1x3x256x256", "1x3x1024x1024")


@pytest.mark.parametrize(("version", "flags"), [
    ("10.0.1.6", ["STRONGLY_TYPED"]), ("10.3.0.30", ["STRONGLY_TYPED"]), ("10.11.0", ["STRONGLY_TYPED"]),
    ("10.13.3", ["STRONGLY_TYPED"]), ("11.0.0", []), ("11.4.0.106", []),
])
def test_every_supported_tensorrt_builds_strongly_typed(version, flags):
    """10.x asks for strong typing with the creation flag (JetPack 6's 10.3 too); 11 has no other mode."""
    assert tb.network_flags(rt.version_tuple(version)) == flags


def test_old_tensorrt_refused():
    with pytest.raises(StylecastError, match="too old"):
        tb.network_flags((8, 6, 1))


def test_engine_name_carries_precision_gpu_and_version(tmp_path):
    target = rt.Target("10.13.0.35", "NVIDIA GeForce RTX 4090", "8.9")
    path = tb.engine_path(tmp_path, "wave", "fp16", target)
    assert path.name == "wave.fp16.nvidia-geforce-rtx-4090.trt10.13.0.35.engine"
    assert sidecar_path(path).name == path.name + ".json"


def test_sidecar_written_and_checked(tiny_onnx):
    from stylecast.runtime.artifacts import read_metadata

    profile = rt.Profile.parse("1x3x64x64", "1x3x256x256", "2x3x512x512")
    sidecar = tb.make_sidecar(tiny_onnx, read_metadata(tiny_onnx), profile, ORIN, 512)
    assert sidecar["precision"] == "fp32" and sidecar["strongly_typed"] is True
    assert sidecar["network_flags"] == ["STRONGLY_TYPED"] and sidecar["tf32"] is False
    assert sidecar["onnx_sha256"] == tb.sha256_file(tiny_onnx) and sidecar["profile"]["max"] == "2x3x512x512"
    roundtrip = json.loads(json.dumps(sidecar))
    rt.check_sidecar(roundtrip, ORIN, tiny_onnx.with_suffix(".engine"))  # same TensorRT and GPU: accepted
    for other, what in ((rt.Target("10.4.0", "Orin", "8.7"), "TensorRT 10.3.0"),
                        (rt.Target("10.3.0", "Orin", "7.2"), "compute capability 8.7"),
                        (rt.Target("10.3.0", "Xavier", "8.7"), "GPU Orin")):
        with pytest.raises(StylecastError, match=f"built for {what}.*build-engine tiny.fp32.onnx"):
            rt.check_sidecar(roundtrip, other, tiny_onnx.with_suffix(".engine"))


def test_shape_outside_profile_names_the_rebuild(tmp_path):
    profile = rt.Profile.parse("1x3x64x64", "1x3x256x256", "1x3x512x512")
    check_shape((1, 3, 100, 500), profile, tmp_path / "m.engine")
    with pytest.raises(StylecastError, match="outside the engine's profile.*--max 1x3x600x600"):
        check_shape((1, 3, 600, 600), profile, tmp_path / "m.engine")


def test_engine_without_sidecar_is_one_line_error(tmp_path, photos):
    engine = tmp_path / "wave.fp16.orin.trt10.3.0.engine"
    engine.write_bytes(b"\x00not an engine")
    result = run_cli("stylize", str(photos), "--model", str(engine), "--out", str(tmp_path / "out"))
    assert result.returncode == 2 and "no sidecar" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.skipif(HAS_TENSORRT, reason="checks the message shown where TensorRT is missing")
def test_build_engine_without_tensorrt_says_how_to_install(tiny_onnx):
    result = run_cli("build-engine", str(tiny_onnx))
    assert result.returncode == 2 and "TensorRT is not installed" in result.stderr


def test_build_engine_bad_profile_is_refused_before_tensorrt(tiny_onnx):
    result = run_cli("build-engine", str(tiny_onnx), "--min", "1x3x512x512", "--max", "1x3x64x64")
    assert result.returncode == 2 and "min <= opt <= max" in result.stderr


def test_build_engine_unwritable_out_is_one_line_before_tensorrt(tiny_onnx, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    for option in ("--out", "--timing-cache"):
        target = blocker / "sub" if option == "--out" else blocker / "sub" / "timing.cache"
        result = run_cli("build-engine", str(tiny_onnx), option, str(target))
        assert result.returncode == 2, result.stderr
        assert "cannot write there" in result.stderr and option in result.stderr and "Traceback" not in result.stderr


def test_engine_modules_never_import_torch_or_onnx():
    code = ("import sys, stylecast.export.tensorrt_build, stylecast.runtime.backends.tensorrt, "
            "stylecast.export.cli; print(any(m in sys.modules for m in ('torch', 'onnx')))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_TENSORRT, reason=TRT_MISSING)
def test_build_and_run_engine_matches_onnx(tiny_onnx, tmp_path):
    from stylecast.runtime.backends.onnxruntime import OnnxRuntimeBackend
    from stylecast.runtime.backends.tensorrt import TensorRTBackend
    from stylecast.runtime.metrics import psnr

    built = run_cli("build-engine", str(tiny_onnx), "--out", str(tmp_path), "--min", "1x3x32x32",
                    "--opt", "1x3x64x64", "--max", "2x3x128x128", "--timing-cache", str(tmp_path / "timing.cache"))
    assert built.returncode == 0, built.stderr
    engine = next(tmp_path.glob("tiny.fp32.*.engine"))
    assert (tmp_path / "timing.cache").stat().st_size > 0
    backend = TensorRTBackend(engine)
    batch = np.random.default_rng(0).uniform(0, 255, (2, 3, 61, 67)).astype(np.float32)
    expected = OnnxRuntimeBackend(tiny_onnx, providers=["CPUExecutionProvider"]).run(batch)
    assert psnr(expected, backend.run(batch)) > 40
    assert backend.run(batch[:1]).shape == (1, 3, 61, 67)  # buffers reused for a smaller call
    with pytest.raises(StylecastError, match="outside the engine's profile"):
        backend.run(np.zeros((1, 3, 256, 256), np.float32))


def test_tensorrt_ep_builds_strongly_typed_with_one_profile(tmp_path):
    """The EP's precision flags stay off (the graph carries the types), and one profile covers portrait and
    landscape photos, so it neither weakly types nor rebuilds per image size."""
    from stylecast.runtime.backends.onnxruntime import provider_options

    options = provider_options("TensorrtExecutionProvider", tmp_path / "fresh" / "cache")
    assert options["trt_fp16_enable"] == options["trt_int8_enable"] == "False"
    assert options["trt_profile_min_shapes"] == "image:1x3x16x16"
    assert options["trt_profile_max_shapes"] == "image:4x3x1920x1920"
    assert (tmp_path / "fresh" / "cache" / "ort-trt").is_dir()  # made with its parents
    assert provider_options("CPUExecutionProvider", tmp_path) == {}
