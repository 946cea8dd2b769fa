"""`stylecast serve` against hostile and heavy clients, from outside, as they would do it: raw sockets that stream a
body without a length, send their headers or body a byte at a time, or open more connections than allowed; uploads
in formats the server must not decode; an output too wide for its format; a key that must stay out of the log; a
Host header from a DNS-rebinding page. Then `make serve-attack`'s script in its quick mode."""

from __future__ import annotations

import io
import json
import socket
import struct
import time
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest
from PIL import Image

from stylecast.benchmarks.load import attack
from stylecast.benchmarks.load.server import ServerProcess, running_server
from stylecast.runtime.errors import StylecastError
from stylecast.runtime.images import _to_8bit, check_encodable, decode_image, load_image

from .conftest import DATA

KEY = "hostile-key-0123456789abcdef"
HEADER_TIMEOUT = 2.0
READ_TIMEOUT = 3.0


@pytest.fixture(scope="module")
def server(tiny_onnx):
    with running_server([tiny_onnx], "--max-upload-mb", "1", "--header-timeout", str(HEADER_TIMEOUT),
                        "--read-timeout", str(READ_TIMEOUT), "--max-connections", "12") as process:
        yield process


def _png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    photo = Image.open(DATA / "photos" / "chelsea.jpg").convert("RGB").resize((width, height))
    photo.save(buffer, format="PNG")
    return buffer.getvalue()


def _connect(server: ServerProcess, timeout: float = 30.0) -> socket.socket:
    address = urlsplit(server.url)
    return socket.create_connection((address.hostname, address.port), timeout=timeout)


def _head(server: ServerProcess, method: str, path: str, *headers: str) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {urlsplit(server.url).netloc}", *headers, "", ""]
    return "\r\n".join(lines).encode()


def _answer(sock: socket.socket, headers: dict | None = None) -> tuple[int, dict]:
    """Read one response to its end (Content-Length bodies): status code and JSON body (its headers, lower-cased,
    into ``headers`` when given)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before an answer: {data!r}"
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    if headers is not None:
        headers.update(line.decode().lower().split(": ", 1) for line in head.split(b"\r\n")[1:])
    length = next(int(line.split(b":")[1]) for line in head.lower().split(b"\r\n") if line.startswith(b"content-length"))
    while len(body) < length:
        body += sock.recv(65536)
    return int(head.split()[1]), json.loads(body) if body.startswith(b"{") else {}


def _one_line_error(answer: httpx.Response | dict) -> str:
    message = (answer.json() if isinstance(answer, httpx.Response) else answer)["error"]
    assert "\n" not in message and "Traceback" not in message
    return message


def _closed_within(sock: socket.socket, seconds: float, trickle: bytes = b"") -> float:
    """Seconds until the server closed ``sock`` while we sent ``trickle`` a byte every 0.1 s (nothing: idle)."""
    started = time.monotonic()
    sock.settimeout(0.1)
    for byte in (trickle or b"\0" * 10_000):
        try:
            if trickle:
                sock.send(bytes([byte]))
            if sock.recv(1024) == b"":
                return time.monotonic() - started
        except TimeoutError:
            pass
        except OSError:  # reset or broken pipe: closed too
            return time.monotonic() - started
        assert time.monotonic() - started < seconds, f"still open after {seconds} s"
    raise AssertionError("ran out of bytes to trickle before the server closed the connection")


def test_chunked_upload_accepted_when_small_and_refused_past_the_limit(server):
    """Transfer-Encoding: chunked has no Content-Length to refuse up front: the limit holds while streaming."""
    def chunked(body: bytes) -> tuple[int, dict]:
        with _connect(server) as sock:
            sock.sendall(_head(server, "POST", "/v1/stylize", "Transfer-Encoding: chunked"))
            try:
                for start in range(0, len(body), 16384):
                    part = body[start:start + 16384]
                    sock.sendall(b"%x\r\n" % len(part) + part + b"\r\n")
                sock.sendall(b"0\r\n\r\n")
            except OSError:  # the server answered and stopped reading: the answer is still there to read
                pass
            return _answer(sock)

    code, _ = chunked(_png(64, 48))
    assert code == 200
    code, body = chunked(b"\0" * (3 << 20))
    assert code == 413 and "limit of 1048576 bytes" in _one_line_error(body)


def test_slow_headers_are_cut_off_while_others_are_answered(server):
    """A client sending its headers a byte at a time, and one that sends nothing, are disconnected after
    --header-timeout; a normal client is answered meanwhile."""
    with _connect(server) as slow, _connect(server) as idle:
        slow.sendall(b"GET /v2/health/live HTTP/1.1\r\n")
        started = time.monotonic()
        assert httpx.get(f"{server.url}/v2/health/live").status_code == 200
        assert time.monotonic() - started < 1.0
        waited = _closed_within(slow, HEADER_TIMEOUT + 3, b"X-Slow: " + b"a" * 500)
        assert HEADER_TIMEOUT - 0.5 < waited < HEADER_TIMEOUT + 3
        assert _closed_within(idle, 2.0) < 2.0  # it has waited as long as the slow one already
    assert httpx.get(f"{server.url}/v2/health/live").status_code == 200


def test_slow_body_gets_408_and_the_connection_closed(server):
    with _connect(server) as sock:
        sock.sendall(_head(server, "POST", "/v1/stylize", "Content-Length: 100000"))
        started = time.monotonic()
        sock.settimeout(0.2)
        answer = b""
        while b"\r\n\r\n" not in answer:
            assert time.monotonic() - started < READ_TIMEOUT + 1.5, "no 408 within --read-timeout"
            try:
                sock.send(b"x")
                answer += sock.recv(65536)
            except TimeoutError:
                continue
        sock.settimeout(5)
        while not answer.endswith(b"}"):
            answer += sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 408") and b"connection: close" in answer.lower()
        assert "too slow" in _one_line_error(json.loads(answer.split(b"\r\n\r\n", 1)[1]))
        assert sock.recv(1) == b""  # closed by the server


def test_connections_beyond_the_limit_get_503_and_the_server_stays_live(server):
    sockets = [_connect(server) for _ in range(20)]
    try:
        for sock in sockets:
            sock.sendall(_head(server, "GET", "/v2/health/live"))
        heads = [{} for _ in sockets]
        answers = [_answer(sock, head) for sock, head in zip(sockets, heads, strict=True)]
    finally:
        for sock in sockets:
            sock.close()
    codes = [code for code, _ in answers]
    assert 503 in codes and set(codes) <= {200, 503}, codes
    for (code, body), head in zip(answers, heads, strict=True):
        if code == 503:  # typed like every other refusal, with when to come back
            assert "--max-connections" in _one_line_error(body) and head["retry-after"] == "1", (body, head)
    time.sleep(0.2)  # the server notices the closed connections
    assert httpx.get(f"{server.url}/v2/health/live").status_code == 200


@pytest.mark.parametrize("bad", ["Content-Length: 12x", "Content-Length: 5, 6", "Bad Header Without Colon"])
def test_a_request_h11_cannot_parse_gets_a_json_400(server, bad):
    with _connect(server) as sock:
        sock.sendall(_head(server, "POST", "/v1/stylize", bad))
        code, body = _answer(sock)
    assert code == 400 and "malformed HTTP request" in _one_line_error(body)


def test_heic_upload_is_stylized(server):
    pillow_heif = pytest.importorskip("pillow_heif")
    photo = Image.open(DATA / "photos" / "chelsea.jpg").convert("RGB")
    buffer = io.BytesIO()
    pillow_heif.from_pillow(photo).save(buffer, quality=90)
    answer = httpx.post(f"{server.url}/v1/stylize", content=buffer.getvalue(), timeout=60)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "image/jpeg"  # Pillow writes no HEIC: answered as JPEG
    assert Image.open(io.BytesIO(answer.content)).size == photo.size


def _psd_header() -> bytes:
    """A Photoshop file's header: signature, version 1, 3 channels of 8 bits, RGB."""
    return b"8BPS" + struct.pack(">H6xHIIHH", 1, 3, 16, 16, 8, 3) + b"\0" * 64


def _eps() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), "red").save(buffer, format="EPS")
    return buffer.getvalue()


def test_eps_and_psd_uploads_are_refused_naming_the_accepted_formats(server):
    for name, data in (("EPS", _eps()), ("PSD", _psd_header())):
        answer = httpx.post(f"{server.url}/v1/stylize", content=data)
        message = _one_line_error(answer)
        assert answer.status_code in (415, 422), answer.text
        assert f"{name} images are not accepted" in message and "JPEG, PNG, WebP, HEIC/HEIF" in message


def test_local_files_keep_every_format_pillow_reads(tmp_path):
    """`stylecast stylize` reads what its user chose (a PPM from a scanner); an upload in that format is refused."""
    Image.new("RGB", (16, 16), "red").save(tmp_path / "scan.ppm")
    assert load_image(tmp_path / "scan.ppm").rgb.shape == (16, 16, 3)
    with pytest.raises(StylecastError, match="PPM images are not accepted"):
        decode_image(io.BytesIO((tmp_path / "scan.ppm").read_bytes()), "upload")


def test_16bit_conversion_is_exact():
    """Every 16-bit value maps as the float64 formula did, now computed in place in 32-bit integers."""
    values = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    expected = np.floor(values / 65535 * 255 + 0.5).astype(np.uint8)
    assert (np.asarray(_to_8bit(Image.fromarray(values))) == expected).all()


def test_too_wide_for_webp_is_a_4xx_naming_the_limit(server):
    with pytest.raises(StylecastError, match="at most 16383 pixels a side"):
        check_encodable(16_400, 16, "WEBP")
    check_encodable(16_400, 16, "PNG")
    answer = httpx.post(f"{server.url}/v1/stylize", params={"format": "webp"}, content=_png(16_400, 16), timeout=120)
    assert 400 <= answer.status_code < 500, answer.text
    message = _one_line_error(answer)
    assert "16383" in message and "format=png" in message


def test_api_key_works_and_never_reaches_the_log(tiny_onnx):
    """With the access log on (--log-level info), a keyed request succeeds and the key is nowhere in the output.
    --allowed-host adds a name a proxy may send."""
    with running_server([tiny_onnx], "--api-key", KEY, "--log-level", "info",
                        "--allowed-host", "stylecast.example") as server:
        url = f"{server.url}/v1/stylize"
        assert httpx.post(url, content=_png(64, 48), headers={"X-API-Key": KEY}).status_code == 200
        assert httpx.post(url, content=_png(64, 48), headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
        assert httpx.post(url, content=_png(64, 48), headers={"X-API-Key": KEY[:-1]}).status_code == 401
        proxied = httpx.get(f"{server.url}/v2/health/live", headers={"Host": "stylecast.example"})
        assert proxied.status_code == 200
        deadline = time.monotonic() + 10
        while "POST /v1/stylize" not in "".join(server.log):  # the access log is read as the server writes it
            assert time.monotonic() < deadline, "".join(server.log)
            time.sleep(0.05)
        assert server.stop() == 0
    log = "".join(server.log)
    assert KEY not in log and KEY[:-1] not in log


def test_host_header_must_name_this_machine_on_loopback(server):
    """DNS rebinding: a page on another name that resolves to 127.0.0.1 is refused; this machine's names pass."""
    port = urlsplit(server.url).port
    live = f"{server.url}/v2/health/live"
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}", "LOCALHOST"):
        assert httpx.get(live, headers={"Host": host}).status_code == 200, host
    for host in ("evil.example", f"evil.example:{port}", f"evil@127.0.0.1:{port}", "127.0.0.1.evil.example"):
        answer = httpx.get(live, headers={"Host": host})
        assert answer.status_code == 421, host
        assert "--allowed-host" in _one_line_error(answer)


def test_thumbnail_404_names_no_model_and_the_page_policy(server):
    answer = httpx.get(f"{server.url}/v1/styles/wave_fp32/thumbnail.jpg")
    assert answer.status_code == 404 and "tiny_fp32" not in _one_line_error(answer)
    policy = httpx.get(f"{server.url}/").headers["content-security-policy"]
    assert "base-uri 'none'" in policy and "form-action 'self'" in policy


def test_attack_script_quick_run(tiny_onnx, tmp_path):
    """`make serve-attack` at small sizes: every figure reported, and no malformed request answered 5xx."""
    code = attack.main(["--model", str(tiny_onnx), "--quick", "--out", str(tmp_path)])
    report = json.loads((tmp_path / "attack.json").read_text())
    assert set(report["figures"]) == set(attack.TARGETS) == set(report["met"])
    assert len(report["cases"]) == 9 and report["machine"] and (tmp_path / "attack.md").is_file()
    assert report["small_after_abandoned"]["code"] == 200
    assert report["figures"]["five_xx"] == 0, report["cases"]
    assert code == 0
