"""`--stroke`: stroke 1 paints exactly as before, a smaller stroke size returns the input's size with the photo's
edges kept sharp by the guided upsampling (where plain bicubic upscaling blurs them), out-of-range values are one
line (CLI) or a 4xx (serve, /v1 and v2), requests of different stroke sizes never share a batch, the page has the
slider, and the benchmark runs at a tiny size."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from stylecast.benchmarks.media import stroke as bench
from stylecast.runtime.errors import StylecastError
from stylecast.runtime.media import frame_runner, run_image
from stylecast.runtime.stroke import check_stroke, paint_at_stroke
from stylecast.runtime.stylizer import Stylizer

from .conftest import DATA, export_tiny_net, run_cli

cv2 = pytest.importorskip("cv2")


@pytest.fixture(scope="module")
def solo(tmp_path_factory, photos) -> Path:
    """A tiny untrained net's fp32 export (with its tiled graphs): seconds to make."""
    return export_tiny_net(tmp_path_factory.mktemp("stroke"), "solo", 1, photos)


def _photo(width: int, height: int) -> np.ndarray:
    return np.asarray(Image.open(DATA / "photos" / "chelsea.jpg").convert("RGB").resize((width, height)))


def _edge_image() -> np.ndarray:
    """A sharp vertical edge and a sharp-edged block, with a little noise."""
    rgb = np.full((96, 128, 3), 40.0)
    rgb[:, 61:] = 210
    rgb[30:70, 20:40] = (200, 60, 30)
    return np.clip(rgb + np.random.default_rng(0).normal(0, 2, rgb.shape), 0, 255).astype(np.uint8)


def _invert(images: list[np.ndarray]) -> list[np.ndarray]:
    """A stand-in for the net that paints every pixel on its own: whatever blur the output has, upsampling made."""
    return [255 - image for image in images]


def test_stroke_1_is_the_run_itself_and_out_of_range_is_refused():
    images = [_edge_image()]
    assert np.array_equal(paint_at_stroke(_invert, images, 1.0)[0], _invert(images)[0])
    for bad in (0.0, -0.5, 1.5, float("nan"), float("inf")):
        with pytest.raises(StylecastError, match="must be above 0 and at most 1") as caught:
            check_stroke(bad)
        assert "\n" not in str(caught.value)


def test_without_opencv_a_smaller_stroke_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "cv2", None)  # import cv2 raises ImportError
    check_stroke(1.0)  # stroke 1 needs nothing
    with pytest.raises(StylecastError, match=r"pip install 'stylecast\[stroke\]'"):
        check_stroke(0.5)
    with pytest.raises(StylecastError, match=r"stylecast\[stroke\]"):
        paint_at_stroke(_invert, [_edge_image()], 0.5)


@pytest.mark.parametrize("stroke", [0.5, 0.25])
def test_edges_stay_sharp_where_bicubic_upscaling_blurs_them(stroke):
    rgb = _edge_image()
    mask = bench.edge_mask(rgb, 0.05)
    reference = bench.edge_energy(_invert([rgb])[0], mask)
    guided = paint_at_stroke(_invert, [rgb], stroke)[0]
    small = cv2.resize(rgb, (round(128 * stroke), round(96 * stroke)), interpolation=cv2.INTER_AREA)
    plain = cv2.resize(_invert([small])[0], (128, 96), interpolation=cv2.INTER_CUBIC)
    assert guided.shape == rgb.shape and guided.dtype == np.uint8
    sharp, blurred = bench.edge_energy(guided, mask) / reference, bench.edge_energy(plain, mask) / reference
    assert sharp >= 0.55 and sharp >= 1.5 * blurred, (sharp, blurred)
    # away from the edges the painting passes as upscaled
    flat = ~cv2.dilate(mask.astype(np.uint8), np.ones((25, 25), np.uint8)).astype(bool)
    assert np.abs(guided.astype(int) - plain.astype(int))[flat].mean() < 2


def test_tiny_images_and_float_tensors_keep_their_size_and_type():
    for height, width in ((1, 1), (3, 2), (17, 5)):
        assert paint_at_stroke(_invert, [_edge_image()[:height, :width]], 0.3)[0].shape == (height, width, 3)
    tensor = _edge_image().astype(np.float32)
    out = paint_at_stroke(lambda images: images, [tensor[::-1]], 0.5)[0]  # a strided view, as v2 batches give
    assert out.dtype == np.float32 and out.shape == tensor.shape


def test_the_runtime_paints_at_stroke_tiled_and_as_video_frames(solo):
    stylizer = Stylizer(solo)
    rgb = _photo(120, 80)
    today = stylizer.stylize_batch([rgb])[0]
    assert np.array_equal(run_image(stylizer, rgb, None, 64), today)
    assert np.array_equal(run_image(stylizer, rgb, None, 64, stroke=1.0), today)
    half = run_image(stylizer, rgb, None, 64, stroke=0.5)
    assert half.shape == rgb.shape and not np.array_equal(half, today)
    # tiles decided at the painted size: 60 px tiles would cut 120x80 but not its 60x40 half
    assert np.array_equal(run_image(stylizer, rgb, 60, 8, stroke=0.5), half)
    assert run_image(stylizer, rgb, 32, 8, stroke=0.5).shape == rgb.shape  # tiled at that size too
    frames = frame_runner(stylizer, None, 64, stroke=0.5)([rgb, rgb[::-1].copy()])
    assert [f.shape for f in frames] == [rgb.shape] * 2 and np.array_equal(frames[0], half)


def test_cli_stroke_1_is_byte_identical_and_bad_values_are_one_line(solo, tmp_path):
    source = tmp_path / "photo.png"
    Image.fromarray(_photo(90, 60)).save(source)
    outputs = {}
    for name, extra in (("default", []), ("one", ["--stroke", "1"]), ("half", ["--stroke", "0.5"])):
        result = run_cli("stylize", str(source), "--model", str(solo), "--out", str(tmp_path / f"{name}.png"), *extra)
        assert result.returncode == 0, result.stderr
        outputs[name] = (tmp_path / f"{name}.png").read_bytes()
    assert outputs["one"] == outputs["default"]
    assert Image.open(io.BytesIO(outputs["half"])).size == (90, 60) and outputs["half"] != outputs["default"]
    for bad in ("0", "1.5"):
        result = run_cli("stylize", str(source), "--model", str(solo), "--out", str(tmp_path / "bad"), "--stroke", bad)
        lines = result.stderr.strip().splitlines()
        assert result.returncode != 0 and len(lines) == 1 and "--stroke" in lines[0], result.stderr
        assert "Traceback" not in result.stderr


@pytest.fixture(scope="module")
def client(solo):
    from fastapi.testclient import TestClient

    from stylecast.serve.app import Settings, create_app
    from stylecast.serve.models import ModelSet

    with TestClient(create_app(ModelSet([solo], DATA), Settings())) as test_client:
        yield test_client


def _png(rgb: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "PNG")
    return buffer.getvalue()


def _one_line_4xx(answer: httpx.Response) -> str:
    assert 400 <= answer.status_code < 500, (answer.status_code, answer.text[:300])
    message = answer.json()["error"]
    assert "\n" not in message and "Traceback" not in message
    return message


def test_serve_v1_paints_at_stroke_and_refuses_bad_values(client, solo):
    rgb = _photo(72, 48)
    answer = client.post("/v1/stylize", params={"stroke": "0.5", "format": "png"}, content=_png(rgb))
    assert answer.status_code == 200, answer.text
    got = np.asarray(Image.open(io.BytesIO(answer.content)).convert("RGB"))
    assert np.array_equal(got, run_image(Stylizer(solo), rgb, None, 64, stroke=0.5))
    for bad in ("0", "-1", "2", "nan", "inf"):
        answer = client.post("/v1/stylize", params={"stroke": bad}, content=_png(rgb))
        assert answer.status_code == 400 and "stroke" in _one_line_4xx(answer), bad
    answer = client.post("/v1/stylize", params={"stroke": "big"}, content=_png(rgb))
    assert answer.status_code == 422 and "stroke" in _one_line_4xx(answer)


def _v2(client, images: np.ndarray, **parameters: object) -> httpx.Response:
    body = {"inputs": [{"name": "image", "datatype": "FP32", "shape": list(images.shape),
                        "data": images.ravel().tolist()}], "parameters": parameters}
    return client.post("/v2/models/solo_fp32/infer", content=json.dumps(body))


def test_serve_v2_takes_a_stroke_parameter_and_refuses_bad_ones(client, solo):
    images = np.stack([_photo(40, 32), _photo(40, 32)[::-1]]).transpose(0, 3, 1, 2).astype(np.float32)
    answer = _v2(client, images, stroke=0.5)
    assert answer.status_code == 200, answer.text
    (output,) = answer.json()["outputs"]
    assert output["shape"] == list(images.shape)
    got = np.asarray(output["data"], np.float32).reshape(images.shape)
    model = Stylizer(solo)
    expected = paint_at_stroke(lambda small: list(model.forward(np.stack(small).transpose(0, 3, 1, 2))
                                                  .transpose(0, 2, 3, 1)), list(images.transpose(0, 2, 3, 1)), 0.5)
    np.testing.assert_allclose(got, np.stack(expected).transpose(0, 3, 1, 2), atol=1e-2)
    plain = np.asarray(_v2(client, images, stroke=1).json()["outputs"][0]["data"], np.float32)
    np.testing.assert_allclose(plain.reshape(images.shape), model.forward(images), atol=1e-3)
    side = model.min_side  # the smallest tensor the server takes, painted below it at stroke 0.25
    answer = _v2(client, np.full((1, 3, side, side), 128.0, np.float32), stroke=0.25)
    assert answer.status_code == 200 and answer.json()["outputs"][0]["shape"] == [1, 3, side, side], answer.text
    for bad in (0, 1.5, -1, "half", True):
        answer = _v2(client, images, stroke=bad)
        assert answer.status_code == 400 and "parameters.stroke" in _one_line_4xx(answer), bad


def test_requests_of_different_strokes_never_share_a_batch(client, solo):
    from stylecast.serve.models import ModelSet, image_key

    models = ModelSet([solo], DATA)
    model = models.models["solo_fp32"]
    rgb = _photo(48, 32)
    assert image_key(model, rgb, 10**6, 0.5) != image_key(model, rgb, 10**6, 1.0)
    assert image_key(model, rgb, 10**6) == image_key(model, rgb.copy(), 10**6, 1.0)
    key = image_key(model, rgb, 10**6, 0.5)
    vector = model.stylizer.style_vector
    batch = models.run(key, [(rgb, 1.0, vector, 0.5), (rgb[::-1].copy(), 1.0, vector, 0.5)], lambda: False)
    assert np.array_equal(batch[0], run_image(Stylizer(solo), rgb, None, 64, stroke=0.5))


def test_the_page_has_a_stroke_slider_it_sends(client):
    page = client.get("/").text
    assert '<input id="stroke" type="range" min="0.25" max="1"' in page and 'id="stroke-value"' in page
    script = client.get("/page/app.js").text
    assert "stroke" in script and 'URLSearchParams({ model: state.model, strength, stroke })' in script


def test_the_benchmark_runs_at_a_tiny_size(solo, tmp_path):
    result = bench.run([solo], DATA / "photos" / "chelsea.jpg", "96x64", "64x48", 1, tmp_path)
    assert [row["stroke"] for row in result["latency"]] == list(bench.STROKES)
    assert result["latency"][0]["time_ratio"] == 1.0 and result["latency"][0]["edge_ratio"] == 1.0
    assert {p.name for p in tmp_path.iterdir()} >= {"stroke.json", "stroke.md", "gallery.jpg"}
    assert (tmp_path / "gallery.jpg").stat().st_size <= bench.GALLERY_BYTES
    assert "| solo.fp32.onnx | 0.5 |" in (tmp_path / "stroke.md").read_text()
