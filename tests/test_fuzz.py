"""Bounded fuzzing: whatever bytes the loaders get, only a one-line StylecastError may come out."""

import io
import json
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from stylecast.runtime.artifacts import read_metadata
from stylecast.runtime.backends.onnxruntime import OnnxRuntimeBackend
from stylecast.runtime.errors import StylecastError
from stylecast.runtime.images import load_image

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _seeds() -> dict[str, bytes]:
    rgb = np.random.default_rng(0).integers(0, 256, (12, 16, 3), dtype=np.uint8)
    found = {}
    for fmt, suffix, options in [("PNG", ".png", {}), ("JPEG", ".jpg", {}), ("GIF", ".gif", {}),
                                 ("TIFF", ".tif", {}), ("WEBP", ".webp", {"lossless": True}), ("BMP", ".bmp", {})]:
        buffer = io.BytesIO()
        Image.fromarray(rgb).save(buffer, format=fmt, **options)
        found[suffix] = buffer.getvalue()
    return found


SEEDS = _seeds()


@st.composite
def mutated(draw, seeds: dict[str, bytes]):
    """A valid file with a few bytes overwritten, a slice cut out, or random tail: near-valid input reaches
    deep into decoders, where random bytes would be turned away at the magic number."""
    suffix = draw(st.sampled_from(sorted(seeds)))
    data = bytearray(seeds[suffix])
    for _ in range(draw(st.integers(1, 8))):
        at = draw(st.integers(0, len(data) - 1))
        data[at] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        start = draw(st.integers(0, len(data)))
        data = data[:start] + data[start + draw(st.integers(0, 64)):]
    return suffix, bytes(data) + draw(st.binary(max_size=32))


def _only_user_errors(path, data: bytes, load) -> None:
    """Write ``data`` to ``path`` and load it: it may load or raise a one-line StylecastError, nothing else."""
    path.write_bytes(data)
    try:
        load(path)
    except StylecastError as exc:
        assert "\n" not in str(exc)


@FUZZ
@given(case=mutated(SEEDS))
def test_image_loader_fuzz(tmp_path, case):
    suffix, data = case
    _only_user_errors(tmp_path / f"fuzz{suffix}", data, load_image)


@FUZZ
@given(data=st.binary(max_size=512))
def test_image_loader_random_bytes(tmp_path, data):
    _only_user_errors(tmp_path / "random.png", data, load_image)


@st.composite
def safetensors_headers(draw):
    meta = draw(st.one_of(
        st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=4),
        st.lists(st.integers(), max_size=3), st.integers(), st.none(), st.text(max_size=8)))
    header = draw(st.one_of(st.just({"__metadata__": meta}), st.lists(st.integers(), max_size=2), st.text(max_size=8)))
    body = json.dumps(header).encode()
    length = draw(st.one_of(st.just(len(body)), st.integers(0, 2**64 - 1)))
    return struct.pack("<Q", length) + body + draw(st.binary(max_size=16))


@FUZZ
@given(data=safetensors_headers())
def test_checkpoint_metadata_fuzz(tmp_path, data):
    _only_user_errors(tmp_path / "m.safetensors", data, read_metadata)


@FUZZ
@given(data=st.binary(max_size=256))
def test_report_metadata_fuzz(tmp_path, data):
    _only_user_errors(tmp_path / "report.json", data, read_metadata)


@pytest.fixture(scope="module")
def onnx_bytes(tiny_onnx) -> dict[str, bytes]:
    return {".onnx": tiny_onnx.read_bytes()}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_onnx_loader_fuzz(tmp_path, onnx_bytes, data):
    _, blob = data.draw(mutated(onnx_bytes))
    _only_user_errors(tmp_path / "fuzz.onnx", blob, lambda p: OnnxRuntimeBackend(p, providers=["CPUExecutionProvider"]))
    _only_user_errors(tmp_path / "fuzz.onnx", blob, read_metadata)
