"""The v2 (Triton) protocol at its boundary, against one real `stylecast serve` process: Triton's model
configuration, statistics and repository index through tritonclient, the faults that once were 500s, a
property-based fuzz of bodies and headers, batches equal to single images, and health probes staying fast while a
large JSON request is decoded, run and answered."""

from __future__ import annotations

import asyncio
import io
import json
import socket
import subprocess
import sys
import textwrap
import time

import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from stylecast.benchmarks.load.client import request_counts, scrape
from stylecast.benchmarks.load.server import running_server

KEY = "v2-test-key-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {KEY}"}
MODEL = "tiny_fp32"
MAX_BATCH = 4
WINDOW_MS = 30  # long enough that concurrent requests of one size share a batch
TENSOR = {"name": "image", "datatype": "FP32", "shape": [1, 3, 16, 16], "data": [0.5] * 768}


@pytest.fixture(scope="module")
def server(tiny_onnx):
    with running_server([tiny_onnx], "--max-batch", str(MAX_BATCH), "--batch-window-ms", str(WINDOW_MS),
                        env={"STYLECAST_API_KEY": KEY}) as process:
        yield process


@pytest.fixture(scope="module")
def client(server):
    import tritonclient.http as triton

    return triton.InferenceServerClient(server.url.removeprefix("http://"))


def auth() -> dict[str, str]:
    """A fresh copy for each tritonclient call: it adds its own headers to the dict it is given."""
    return dict(AUTH)


def _infer_url(server) -> str:
    return f"{server.url}/v2/models/{MODEL}/infer"


def _binary_body(images: np.ndarray) -> tuple[bytes, dict[str, str]]:
    header = json.dumps({"inputs": [{"name": "image", "datatype": "FP32", "shape": list(images.shape),
                                     "parameters": {"binary_data_size": images.nbytes}}],
                         "outputs": [{"name": "stylized", "parameters": {"binary_data": True}}]}).encode()
    return header + images.astype("<f4").tobytes(), {"Inference-Header-Content-Length": str(len(header)), **AUTH}


def _output(answer: httpx.Response) -> np.ndarray:
    """The output tensor of a binary or JSON answer."""
    assert answer.status_code == 200, answer.text[:300]
    if "inference-header-content-length" in answer.headers:
        split = int(answer.headers["inference-header-content-length"])
        header = json.loads(answer.content[:split])
        return np.frombuffer(answer.content[split:], "<f4").reshape(header["outputs"][0]["shape"])
    output = answer.json()["outputs"][0]
    return np.asarray(output["data"], np.float32).reshape(output["shape"])


def _assert_one_line_error(answer: httpx.Response, status: int | None = None) -> str:
    assert 400 <= answer.status_code < 500, f"{answer.status_code}: {answer.text[:300]}"
    if status is not None:
        assert answer.status_code == status, answer.text[:300]
    message = answer.json()["error"]
    assert isinstance(message, str) and 0 < len(message) < 400 and "\n" not in message and "Traceback" not in message
    return message


def test_model_config_matches_export_and_tells_max_batch_size(server, client, tiny_onnx):
    """perf_analyzer and model_analyzer read max_batch_size from the config: it is the server's --max-batch, a
    batch of that size is served and one more is refused; the config is Triton's own schema and says what
    `stylecast export --triton` writes to config.pbtxt."""
    import onnx
    import tritonclient.http as triton
    from google.protobuf import json_format, text_format
    from tritonclient.grpc import model_config_pb2

    from stylecast.export.triton import make_config

    config = client.get_model_config(MODEL, headers=auth())
    assert client.get_model_config(MODEL, "1", headers=auth()) == config
    assert config == {"name": MODEL, "platform": "onnxruntime_onnx", "max_batch_size": MAX_BATCH,
                      "input": [{"name": "image", "data_type": "TYPE_FP32", "dims": [3, -1, -1]}],
                      "output": [{"name": "stylized", "data_type": "TYPE_FP32", "dims": [3, -1, -1]}],
                      "dynamic_batching": {"max_queue_delay_microseconds": WINDOW_MS * 1000}}
    parsed = json_format.ParseDict(config, model_config_pb2.ModelConfig())  # refuses a field Triton lacks
    exported = text_format.Parse(make_config(MODEL, "onnxruntime_onnx", onnx.load(str(tiny_onnx)), MAX_BATCH),
                                 model_config_pb2.ModelConfig())
    parsed.dynamic_batching.max_queue_delay_microseconds = 0  # the one thing the server adds: its batch window
    assert parsed == exported

    rng = np.random.default_rng(0)
    for batch in (MAX_BATCH, MAX_BATCH + 1):
        tensor = triton.InferInput("image", [batch, 3, 16, 16], "FP32")
        tensor.set_data_from_numpy(rng.random((batch, 3, 16, 16), np.float32) * 255)
        if batch <= config["max_batch_size"]:
            assert client.infer(MODEL, [tensor], headers=auth()).as_numpy("stylized").shape == (batch, 3, 16, 16)
        else:
            with pytest.raises(triton.InferenceServerException, match="max_batch_size 4"):
                client.infer(MODEL, [tensor], headers=auth())
    with pytest.raises(triton.InferenceServerException, match="only version 1"):
        client.get_model_config(MODEL, "2", headers=auth())


def test_repository_index_and_model_routes_need_the_key(server, client):
    assert client.get_model_repository_index(headers=auth()) == [{"name": MODEL, "version": "1", "state": "READY"}]
    index = f"{server.url}/v2/repository/index"
    assert httpx.post(index, content=b'{"ready": true}', headers=AUTH).json() == [
        {"name": MODEL, "version": "1", "state": "READY"}]
    for body, fault in ((b"{", "not valid JSON"), (b"[]", "JSON object"), (b'{"ready": "yes"}', "ready")):
        assert fault in _assert_one_line_error(httpx.post(index, content=body, headers=AUTH), 400)
    load = httpx.post(f"{server.url}/v2/repository/models/{MODEL}/load", headers=AUTH)
    assert "fixed when it starts" in _assert_one_line_error(load, 400)
    assert "statistics" in httpx.get(f"{server.url}/v2").json()["extensions"]
    for method, path in (("GET", f"/v2/models/{MODEL}/config"), ("GET", f"/v2/models/{MODEL}/stats"),
                         ("GET", "/v2/models/stats"), ("POST", "/v2/repository/index")):
        _assert_one_line_error(httpx.request(method, server.url + path), 401)
    assert httpx.get(f"{server.url}/v2/health/live").status_code == 200


def _stats(client, **kwargs) -> dict:
    (stats,) = client.get_inference_statistics(MODEL, headers=auth(), **kwargs)["model_stats"]
    return stats


def test_statistics_count_v1_and_v2_requests(server, client):
    """Triton's statistics extension: counts rise with each request, durations are real (ns > 0), a refused
    request is a fail, and a v1 request of the model is counted with the v2 ones."""
    import tritonclient.http as triton

    before = _stats(client)
    assert set(before["inference_stats"]) >= {"success", "fail", "queue", "compute_input", "compute_infer",
                                              "compute_output"}
    tensor = triton.InferInput("image", [2, 3, 24, 20], "FP32")
    tensor.set_data_from_numpy(np.full((2, 3, 24, 20), 100, np.float32))
    client.infer(MODEL, [tensor], headers=auth())
    png = io.BytesIO()
    Image.new("RGB", (20, 24), (10, 200, 30)).save(png, "PNG")
    assert httpx.post(f"{server.url}/v1/stylize", content=png.getvalue(), headers=AUTH).status_code == 200
    bad = httpx.post(_infer_url(server), json={"inputs": [{**TENSOR, "shape": [1, 4, 16, 16]}]}, headers=AUTH)
    _assert_one_line_error(bad, 400)
    after = _stats(client)

    assert after["name"] == MODEL and after["version"] == "1"
    assert after["inference_count"] - before["inference_count"] == 3  # two images in one v2 request, one in v1
    assert after["execution_count"] - before["execution_count"] == 2  # different sizes never share a batch
    grown = {name: {key: after["inference_stats"][name][key] - before["inference_stats"][name][key]
                    for key in ("count", "ns")} for name in after["inference_stats"]}
    assert grown["queue"]["count"] == grown["compute_infer"]["count"] == 2
    assert grown["fail"]["count"] == 1 and grown["success"]["count"] >= 1
    for name in ("success", "fail", "queue", "compute_input", "compute_infer", "compute_output"):
        assert grown[name]["ns"] > 0, name
    assert {2, 1} <= {batch["batch_size"] for batch in after["batch_stats"]}
    assert abs(after["last_inference"] / 1000 - time.time()) < 60
    assert client.get_inference_statistics(headers=auth())["model_stats"][0]["name"] == MODEL
    assert _stats(client, model_version="1")["inference_count"] == after["inference_count"]


def _named_cases() -> dict[str, tuple[bytes, dict[str, str], int, str]]:
    """The faults that were 500s: body, headers, the status and what the message must name."""
    def request(**changes: object) -> bytes:
        tensor = {**TENSOR, **changes.pop("tensor", {})}
        return json.dumps({"inputs": [tensor], **changes}).encode()

    cases = {
        "unicode digit length": (b"{}", {"Inference-Header-Content-Length": "\u00b2"}, 400, "Inference-Header"),
        "5000-digit length": (b"{}", {"Inference-Header-Content-Length": "9" * 5000}, 400, "Inference-Header"),
        "nested JSON": (b"[" * 100_000 + b"]" * 100_000, {}, 400, "infer request"),
        "10^400 in data": (request(tensor={"data": [10**400] * 768}), {}, 400, "number"),
        # written by hand: Python itself refuses to print an integer of more than 4300 digits
        "5000-digit integer": (request(tensor={"data": [0] * 768}).replace(b"[0,", b"[" + b"7" * 5000 + b",", 1), {},
                               400, "number"),
    }
    for kind, value in (("string", "x"), ("number", 3), ("list", [1, 2])):
        cases[f"request parameters {kind}"] = (request(parameters=value), {}, 400, "parameters")
        cases[f"input parameters {kind}"] = (request(tensor={"parameters": value}), {}, 400, "inputs[0].parameters")
        cases[f"output parameters {kind}"] = (request(outputs=[{"name": "stylized", "parameters": value}]), {}, 400,
                                              "outputs[0].parameters")
    return cases


NAMED = _named_cases()


@pytest.mark.parametrize("case", list(NAMED))
def test_named_faults_are_one_line_4xx(server, case):
    body, headers, status, names = NAMED[case]
    encoded = {name: value.encode() for name, value in {**headers, **AUTH}.items()}  # '²' as a client sends it
    message = _assert_one_line_error(httpx.post(_infer_url(server), content=body, headers=encoded, timeout=30), status)
    assert names in message, message


def test_a_client_leaving_mid_body_is_its_doing_not_a_500(server, client):
    """The body cut off by the client: counted as 499 (as nginx logs it) and a fail of the model, never a 500 with
    a traceback in the log."""
    before = _stats(client)["inference_stats"]["fail"]["count"]
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as raw:
        raw.sendall(f"POST /v2/models/{MODEL}/infer HTTP/1.1\r\nHost: {host}\r\nAuthorization: {AUTH['Authorization']}"
                    "\r\nContent-Length: 100000\r\n\r\n".encode() + b'{"inputs": [' * 100)
        time.sleep(0.3)  # the server is reading the body
    deadline = time.monotonic() + 10
    while _stats(client)["inference_stats"]["fail"]["count"] == before and time.monotonic() < deadline:
        time.sleep(0.05)
    counts = request_counts(scrape(server.url, AUTH), "/v2/models/{name}/infer")
    assert counts[499] >= 1 and counts[500] == 0, counts
    assert _stats(client)["inference_stats"]["fail"]["count"] == before + 1
    assert "Traceback" not in "".join(server.log)


# --- a property-based fuzz: whatever arrives, a one-line 4xx (or a correct 200), never a 5xx ---
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(10**500), max_value=10**500) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12)
FIELDS = ["id", "inputs", "inputs.0", "inputs.0.name", "inputs.0.datatype", "inputs.0.shape", "inputs.0.data",
          "inputs.0.parameters", "inputs.0.parameters.binary_data_size", "parameters",
          "parameters.binary_data_output", "outputs", "outputs.0", "outputs.0.name", "outputs.0.parameters",
          "outputs.0.parameters.binary_data"]
# What a header value may hold on the wire (no control characters), digits of every script among them.
HEADER_TEXT = st.text(st.characters(categories=["Nd", "No", "L", "P"]) | st.sampled_from("0123456789 "), max_size=30)


def _set(document: dict, path: str, value: object) -> None:
    *parents, last = path.split(".")
    target: object = document
    for part in parents:
        target = target[int(part)] if isinstance(target, list) else target.setdefault(part, {})
    if isinstance(target, list):
        target[int(last)] = value
    else:
        target[last] = value


def _valid_request() -> dict:
    return {"id": "fuzz", "inputs": [dict(TENSOR, parameters={})], "parameters": {},
            "outputs": [{"name": "stylized", "parameters": {"binary_data": False}}]}


@st.composite
def hostile_requests(draw) -> tuple[bytes, dict[str, str]]:
    kind = draw(st.sampled_from(["field", "field", "bytes", "nested", "binary", "header"]))
    headers: dict[str, str] = {}
    if kind == "field":  # one field of a valid request replaced by any JSON value
        document = _valid_request()
        _set(document, draw(st.sampled_from(FIELDS)), draw(JSON_VALUES))
        body = json.dumps(document).encode()  # Python writes NaN, Infinity and integers of any length
    elif kind == "bytes":
        body = draw(st.binary(max_size=200))
    elif kind == "nested":
        depth = draw(st.integers(1, 5000))
        body = draw(st.sampled_from([b"[", b'{"a":', b'{"inputs":['])) * depth
    elif kind == "binary":  # a binary tensor, whole, cut short or padded, with a true or false declared size
        values = np.ones((1, 3, 16, 16), "<f4").tobytes()
        declared = draw(st.sampled_from([len(values), 0, -1, 2**70, "3072", True]))
        header = json.dumps({"inputs": [{**TENSOR, "data": None, "parameters": {"binary_data_size": declared}}]})
        tail = draw(st.sampled_from([values, values[: draw(st.integers(0, len(values)))], values + b"\x00" * 4]))
        body = header.encode() + tail
        length = draw(st.sampled_from([len(header), len(header) - 1, len(body) + 1, 0]))
        headers["Inference-Header-Content-Length"] = str(length)
    else:
        body = json.dumps(_valid_request()).encode()
    if kind == "header" or (kind != "binary" and draw(st.booleans())):
        headers["Inference-Header-Content-Length"] = draw(HEADER_TEXT | st.integers(0, 10**60).map(str))
    return body, headers


def test_fuzzed_bodies_and_headers_never_5xx(server):
    seen: dict[int, int] = {}

    with httpx.Client(timeout=30, headers=AUTH) as http:
        @settings(max_examples=250, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(hostile_requests())
        def check(request: tuple[bytes, dict[str, str]]) -> None:
            body, headers = request
            answer = http.post(_infer_url(server), content=body,
                               headers={name: value.encode() for name, value in headers.items()})
            seen[answer.status_code] = seen.get(answer.status_code, 0) + 1
            if answer.status_code != 200:
                _assert_one_line_error(answer)

        check()
        assert http.get(f"{server.url}/v2/health/live").status_code == 200
        assert http.post(_infer_url(server), json={"inputs": [TENSOR]}).status_code == 200
    assert sum(count for code, count in seen.items() if code >= 400) > 100, seen  # mostly refused, as meant
    assert all(code < 500 for code in seen), seen


def test_batches_and_concurrent_mixed_sizes_equal_single_images(server):
    """A batch of 2 or 3 images, and concurrent requests of mixed sizes (JSON and binary), give each image
    the output it gets alone."""
    rng = np.random.default_rng(1)
    small = rng.integers(0, 256, (3, 3, 24, 32)).astype(np.float32)
    large = rng.integers(0, 256, (2, 3, 40, 16)).astype(np.float32)

    def alone(image: np.ndarray) -> np.ndarray:
        body, headers = _binary_body(image[None])
        return _output(httpx.post(_infer_url(server), content=body, headers=headers))[0]

    expected = {("small", i): alone(image) for i, image in enumerate(small)}
    expected |= {("large", i): alone(image) for i, image in enumerate(large)}
    for batch in (2, 3):
        body, headers = _binary_body(small[:batch])
        got = _output(httpx.post(_infer_url(server), content=body, headers=headers))
        for i in range(batch):
            np.testing.assert_allclose(got[i], expected["small", i], atol=1e-3)

    async def concurrently() -> list[np.ndarray]:
        async with httpx.AsyncClient(timeout=60, headers=AUTH) as http:
            def send(images: np.ndarray, binary: bool):  # noqa: ANN202 - the request coroutine
                if binary:
                    body, headers = _binary_body(images)
                    return http.post(_infer_url(server), content=body, headers=headers)
                tensor = {"name": "image", "datatype": "FP32", "shape": list(images.shape),
                          "data": images.ravel().tolist()}
                return http.post(_infer_url(server), json={"inputs": [tensor]})

            answers = await asyncio.gather(send(small[:1], True), send(large, False), send(small[1:], False),
                                           send(large[1:], True), send(small[2:], True))
        return [_output(answer) for answer in answers]

    one, both_large, two_small, second_large, third_small = asyncio.run(concurrently())
    pairs = [(one[0], ("small", 0)), (both_large[0], ("large", 0)), (both_large[1], ("large", 1)),
             (two_small[0], ("small", 1)), (two_small[1], ("small", 2)), (second_large[0], ("large", 1)),
             (third_small[0], ("small", 2))]
    for got, key in pairs:
        np.testing.assert_allclose(got, expected[key], atol=1e-3, err_msg=str(key))


PROBE_CLIENT = textwrap.dedent("""
    import sys, urllib.request
    body = open(sys.argv[2], "rb").read()
    request = urllib.request.Request(sys.argv[1], body, {"Authorization": sys.argv[3]})
    with urllib.request.urlopen(request, timeout=120) as answer:
        print(answer.status, len(answer.read()))
""")


def test_health_stays_fast_while_a_large_json_request_is_served(server, tmp_path):
    """A 12 MiB JSON infer request (two million numbers) is decoded in a worker process and answered in parts,
    so /v2/health/live stays fast all along. The request comes from another process, so this one's GIL does not
    slow the probes."""
    side = 820
    image = np.random.default_rng(2).integers(0, 256, (1, 3, side, side)).astype(np.float32)
    body = tmp_path / "infer.json"
    body.write_text(json.dumps({"inputs": [{"name": "image", "datatype": "FP32", "shape": list(image.shape),
                                            "data": image.ravel().tolist()}]}))
    assert body.stat().st_size > 12 << 20
    latencies = []
    with httpx.Client(timeout=30) as http:
        http.get(f"{server.url}/v2/health/live")
        sender = subprocess.Popen([sys.executable, "-c", PROBE_CLIENT, _infer_url(server), str(body), AUTH[
            "Authorization"]], stdout=subprocess.PIPE, text=True)
        while sender.poll() is None:
            started = time.perf_counter()
            assert http.get(f"{server.url}/v2/health/live").status_code == 200
            latencies.append(time.perf_counter() - started)
            time.sleep(0.01)
    status, size = sender.stdout.read().split()
    assert sender.returncode == 0 and status == "200" and int(size) > 12 << 20
    # Before the work moved off the event loop, the probe that met the parse and the one that met the answer's
    # serialisation each waited over a second; now ~10-40 ms on a busy 2-core box. One probe may still meet the
    # scheduler's worst (the decoder process starting on the same two cores: 0.64 s once in CI).
    worst, second = sorted(latencies)[-1], sorted(latencies)[-2]
    assert len(latencies) >= 10 and second <= 0.1 and worst < 1.0, (len(latencies), worst, second)
