"""`stylecast serve` as clients see it: one real server process per group of tests on a free port, with the tiny
exported model. The v2 protocol through Triton's own client, /v1/stylize against `stylecast stylize`, hostile
uploads, an overload burst counted against /metrics, the API key, and a graceful SIGTERM."""

from __future__ import annotations

import asyncio
import io
import json
import shutil
import signal
import struct
import zlib
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from stylecast.benchmarks.load.client import burst, request_counts, scrape
from stylecast.benchmarks.load.server import running_server

from .conftest import DATA, run_cli

KEY = "test-key-0123456789abcdef"


@pytest.fixture(scope="module")
def styles_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("styles")
    shutil.copy(DATA / "style.jpg", folder / "tiny.jpg")  # the tiny model's style is named "tiny"
    return folder


@pytest.fixture(scope="module")
def server(tiny_onnx, styles_dir):
    with running_server([tiny_onnx], "--styles-dir", str(styles_dir), "--max-upload-mb", "1",
                        "--max-pixels", "1000000", "--batch-window-ms", "2") as process:
        yield process


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """A plain PNG, an RGBA PNG and a JPEG whose EXIF says 'rotate 90°', all from a committed photo."""
    folder = tmp_path_factory.mktemp("inputs")
    photo = Image.open(DATA / "photos" / "chelsea.jpg").convert("RGB")
    photo.save(folder / "plain.png")
    rgba = photo.copy()
    rgba.putalpha(Image.linear_gradient("L").resize(photo.size))
    rgba.save(folder / "alpha.png")
    exif = Image.Exif()
    exif[0x0112] = 6
    photo.save(folder / "turned.jpg", exif=exif, quality=95)
    return folder


def _stylized_by_cli(tiny_onnx: Path, source: Path, out: Path, *args: str) -> Image.Image:
    result = run_cli("stylize", str(source), "--model", str(tiny_onnx), "--out", str(out), *args)
    assert result.returncode == 0, result.stderr
    return Image.open(out)


def _grey_levels_apart(a: Image.Image, b: Image.Image) -> int:
    assert a.size == b.size and a.mode == b.mode
    return int(np.abs(np.asarray(a, np.int16) - np.asarray(b, np.int16)).max())


def test_v2_protocol_with_the_triton_client_matches_stylize(server, tiny_onnx, inputs, tmp_path):
    """Triton's own HTTP client: health, metadata, and JSON and binary inference equal to `stylecast stylize`."""
    import tritonclient.http as triton

    client = triton.InferenceServerClient(server.url.removeprefix("http://"))
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("tiny_fp32")
    meta = client.get_model_metadata("tiny_fp32")
    assert meta["platform"] == "onnxruntime_onnx"
    assert meta["inputs"] == [{"name": "image", "datatype": "FP32", "shape": [-1, 3, -1, -1]}]
    assert meta["outputs"] == [{"name": "stylized", "datatype": "FP32", "shape": [-1, 3, -1, -1]}]

    expected = _stylized_by_cli(tiny_onnx, inputs / "plain.png", tmp_path / "cli.png")
    photo = np.asarray(Image.open(inputs / "plain.png"), np.float32).transpose(2, 0, 1)[None]
    for binary in (True, False):
        tensor = triton.InferInput("image", list(photo.shape), "FP32")
        tensor.set_data_from_numpy(photo, binary_data=binary)
        answer = client.infer("tiny_fp32", [tensor], outputs=[triton.InferRequestedOutput("stylized", binary)])
        out = answer.as_numpy("stylized")
        assert out.shape == photo.shape and out.dtype == np.float32
        got = Image.fromarray(np.clip(np.rint(out[0]), 0, 255).astype(np.uint8).transpose(1, 2, 0))
        assert _grey_levels_apart(got, expected) <= 1
    with pytest.raises(triton.InferenceServerException, match="unknown model"):
        client.infer("wave_fp32", [tensor])


def test_v1_stylize_round_trip_equals_stylize(server, tiny_onnx, inputs, tmp_path):
    """Raw body and multipart, EXIF orientation, alpha and strength handled as `stylecast stylize` does."""
    for name, args, params in (("plain.png", (), {}), ("alpha.png", (), {}), ("turned.jpg", (), {}),
                               ("plain.png", ("--strength", "0.4"), {"strength": "0.4"})):
        expected = _stylized_by_cli(tiny_onnx, inputs / name, tmp_path / f"{len(args)}-{name}", *args)
        data = (inputs / name).read_bytes()
        raw = httpx.post(f"{server.url}/v1/stylize", content=data, params={"style": "tiny", **params})
        form = httpx.post(f"{server.url}/v1/stylize", files={"image": (name, data)}, params=params)
        for answer in (raw, form):
            assert answer.status_code == 200, answer.text
            assert answer.headers["content-type"] == ("image/jpeg" if name.endswith(".jpg") else "image/png")
            assert _grey_levels_apart(Image.open(io.BytesIO(answer.content)), expected) <= 1
    webp = httpx.post(f"{server.url}/v1/stylize", content=data, params={"format": "webp"})
    assert webp.headers["content-type"] == "image/webp" and Image.open(io.BytesIO(webp.content)).format == "WEBP"


def test_styles_page_and_metrics(server):
    styles = httpx.get(f"{server.url}/v1/styles").json()
    assert styles == [{"name": "tiny", "model": "tiny_fp32", "precision": "fp32", "backend": styles[0]["backend"],
                       "multi_style": False, "thumbnail": "/v1/styles/tiny_fp32/thumbnail.jpg"}]
    thumbnail = httpx.get(server.url + styles[0]["thumbnail"])
    assert thumbnail.status_code == 200 and Image.open(io.BytesIO(thumbnail.content)).format == "JPEG"
    page = httpx.get(server.url + "/")
    assert page.status_code == 200 and "default-src 'self'" in page.headers["content-security-policy"]
    for asset in ("/page/app.js", "/page/style.css"):
        assert httpx.get(server.url + asset).status_code == 200
        page_text = page.text + httpx.get(server.url + asset).text
        assert "http://" not in page_text and "https://" not in page_text  # no CDN: everything from this server
    text = scrape(server.url)
    for metric in ("stylecast_requests_total", "stylecast_request_seconds_bucket", "stylecast_queue_depth",
                   "stylecast_batch_size_bucket", "stylecast_inference_seconds_bucket"):
        assert metric in text
    cors = httpx.get(f"{server.url}/v1/styles", headers={"Origin": "https://elsewhere.example"})
    assert "access-control-allow-origin" not in cors.headers  # CORS is off unless asked


def _png_header(width: int, height: int) -> bytes:
    """A PNG that claims ``width`` x ``height`` with almost no data: a decompression bomb's header."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


def test_hostile_requests_get_one_line_4xx(server, inputs):
    png = (inputs / "plain.png").read_bytes()
    url = f"{server.url}/v1/stylize"
    v2 = f"{server.url}/v2/models/tiny_fp32/infer"
    tensor = {"name": "image", "datatype": "FP32", "shape": [1, 3, 16, 16], "data": [0.0] * 768}
    cases = {
        "empty": ("POST", url, {}, b""),
        "text": ("POST", url, {}, b"hello, I am not a photo"),
        "truncated PNG": ("POST", url, {}, png[: len(png) // 2]),
        "bad HEIC": ("POST", url, {}, b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64),
        "pixel limit": ("POST", url, {}, _png_header(2000, 2000)),
        "decompression bomb": ("POST", url, {}, _png_header(20000, 20000)),
        "huge upload": ("POST", url, {}, b"\x00" * (2 << 20)),
        "unknown style": ("POST", url + "?style=starry", {}, png),
        "path style": ("POST", url + "?style=../../etc/passwd", {}, png),
        "encoded path style": ("POST", url + "?style=%2e%2e%2fstyles%2fwave", {}, png),
        "style with a dot": ("POST", url + "?style=tiny.jpg", {}, png),
        "long style": ("POST", url + "?style=" + "a" * 500, {}, png),
        "strength": ("POST", url + "?strength=nan", {}, png),
        "format": ("POST", url + "?format=gif", {}, png),
        "form without image": ("POST", url, {"content-type": "multipart/form-data; boundary=x"},
                               b"--x\r\nContent-Disposition: form-data; name=other\r\n\r\nhi\r\n--x--\r\n"),
        "v2 not JSON": ("POST", v2, {}, b"{not json"),
        "v2 no inputs": ("POST", v2, {}, b"{}"),
        "v2 datatype": ("POST", v2, {}, json.dumps({"inputs": [{**tensor, "datatype": "UINT8"}]}).encode()),
        "v2 shape": ("POST", v2, {}, json.dumps({"inputs": [{**tensor, "shape": [1, 4, 16, 16]}]}).encode()),
        "v2 too few values": ("POST", v2, {}, json.dumps({"inputs": [{**tensor, "data": [1.0]}]}).encode()),
        "v2 strings": ("POST", v2, {}, json.dumps({"inputs": [{**tensor, "data": ["x"] * 768}]}).encode()),
        "v2 huge image": ("POST", v2, {}, json.dumps({"inputs": [{**tensor, "shape": [1, 3, 9000, 9000]}]}).encode()),
        "v2 binary size": ("POST", v2, {"inference-header-content-length": "400"}, b"{}" + b"\x00" * 10),
        "v2 unknown output": ("POST", v2, {}, json.dumps({"inputs": [tensor], "outputs": [{"name": "x"}]}).encode()),
        "v2 unknown model": ("POST", f"{server.url}/v2/models/..%2f..%2fetc/infer", {}, b"{}"),
        "v2 version": ("GET", f"{server.url}/v2/models/tiny_fp32/versions/7", {}, b""),
        "no such route": ("GET", f"{server.url}/v1/../../etc/passwd", {}, b""),
    }
    codes = {}
    for case, (method, target, headers, body) in cases.items():
        answer = httpx.request(method, target, content=body, headers=headers, timeout=30)
        codes[case] = answer.status_code
        assert 400 <= answer.status_code < 500, f"{case}: {answer.status_code} {answer.text[:300]}"
        message = answer.json()["error"]
        assert "\n" not in message and "Traceback" not in message, case
    assert codes["pixel limit"] == codes["decompression bomb"] == codes["huge upload"] == 413
    assert codes["unknown style"] == 404 and codes["path style"] == codes["encoded path style"] == 400
    assert httpx.post(url, content=png).status_code == 200  # still serving
    assert request_counts(scrape(server.url), "/v1/stylize")[500] == 0


def test_overload_burst_counted_by_metrics_and_sigterm_finishes_in_flight(tiny_onnx, inputs):
    """Room for 4 photos (72x48) in flight and a 300 ms window: a burst of 40 gets only 200s and 503s (with
    Retry-After), and the server's counts agree. Then SIGTERM with requests in flight: all are answered and the exit
    code is 0."""
    photo = (inputs / "plain.png").read_bytes()
    auth = {"Authorization": f"Bearer {KEY}"}
    with running_server([tiny_onnx], "--max-queue-mp", "0.014", "--max-batch", "8", "--batch-window-ms", "300",
                        env={"STYLECAST_API_KEY": KEY}) as server:
        url = f"{server.url}/v1/stylize"
        assert httpx.post(url, content=photo).status_code == 401
        assert httpx.post(url, content=photo, headers={"X-API-Key": "wrong-key-0123456789"}).status_code == 401
        assert httpx.get(f"{server.url}/v2/health/ready").status_code == 200  # probes need no key
        before = request_counts(scrape(server.url, auth), "/v1/stylize")
        result = asyncio.run(burst(url, photo, requests=40, concurrency=40, headers=auth))
        assert set(result.codes) == {200, 503} and sum(result.codes.values()) == 40, result.codes
        assert "" not in result.retry_after
        after = request_counts(scrape(server.url, auth), "/v1/stylize")
        assert {code: after[code] - before[code] for code in (200, 503)} == {200: result.codes[200],
                                                                             503: result.codes[503]}

        async def in_flight_then_sigterm() -> list[int]:
            async with httpx.AsyncClient(timeout=30, headers=auth) as client:
                pending = [asyncio.create_task(client.post(url, content=photo)) for _ in range(3)]
                await asyncio.sleep(0.15)  # the three are waiting in the 300 ms batch window
                server.process.send_signal(signal.SIGTERM)
                return [(await task).status_code for task in pending]

        assert asyncio.run(in_flight_then_sigterm()) == [200, 200, 200]
        assert server.stop() == 0, "".join(server.log)


def test_exposed_address_without_key_is_refused(tiny_onnx):
    result = run_cli("serve", "--model", str(tiny_onnx), "--host", "0.0.0.0", env={"STYLECAST_API_KEY": ""})
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "--api-key" in result.stderr
