"""`make gpu-check` where there is no GPU (one line, exit 77), its step runner, and the CUDA pieces it checks."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from stylecast.export import gpu_check
from stylecast.runtime.backends.cuda_device import gpu_identity


def test_without_cuda_one_line_and_exit_77(tmp_path):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run([sys.executable, "-m", "stylecast.export.gpu_check", "--out", str(tmp_path)],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == gpu_check.SKIPPED == 77
    assert result.stdout.count("\n") == 1 and result.stdout.startswith("gpu-check: skipped: no CUDA device")
    assert result.stderr == "" and not any(tmp_path.iterdir())


def test_steps_are_recorded_whatever_each_one_does(tmp_path):
    def fine(ctx):
        return "ok", {"n": 1}

    def cannot(ctx):
        raise gpu_check.Skip("tensorrt does not import")

    def broken(ctx):
        raise RuntimeError("parity 12 dB")

    ctx = gpu_check.Context(tmp_path, deadline=float("inf"), scratch=tmp_path)
    steps = [gpu_check.run_step(step, ctx) for step in (fine, cannot, broken)]
    assert [s.status for s in steps] == ["passed", "skipped", "failed"]
    assert steps[2].summary == "RuntimeError: parity 12 dB" and (tmp_path / "broken.traceback.txt").is_file()
    late = gpu_check.run_step(fine, gpu_check.Context(tmp_path, deadline=0.0, scratch=tmp_path))
    assert late.status == "not run" and "budget" in late.summary
    table = gpu_check.render({"created": "now", "machine": "H200", "steps": [s.__dict__ for s in steps]})
    assert "| broken | failed |" in table and "| cannot | skipped |" in table


def test_jetson_module_joins_the_gpu_name(tmp_path):
    model = tmp_path / "model"
    model.write_bytes(b"NVIDIA Jetson AGX Orin Developer Kit\x00")
    assert gpu_identity("Orin", model) == "Orin (NVIDIA Jetson AGX Orin Developer Kit)"
    model.write_bytes(b"QEMU Virtual Machine\x00")
    assert gpu_identity("NVIDIA H200", model) == "NVIDIA H200"
    assert gpu_identity("NVIDIA H200", tmp_path / "absent") == "NVIDIA H200"


@pytest.mark.gpu
@pytest.mark.skipif(gpu_check.cuda_missing() is not None, reason="needs a CUDA device")
def test_device_round_trip_and_close(tmp_path):
    ctx = gpu_check.Context(tmp_path, deadline=float("inf"), scratch=tmp_path)
    summary, details = gpu_check.cuda_python_io(ctx)
    assert "round trip exact" in summary and details["round_trip_ms"] > 0
    from stylecast.runtime.backends.cuda_device import open_device

    device = open_device()
    host = device.pinned(16)
    host[:] = np.arange(16, dtype=np.float32)
    pointer = device.malloc(64)
    device.to_device(pointer, host)
    device.free(pointer)
    device.close()
    device.close()  # twice is harmless: the backend's close and the interpreter's exit both call it
