"""`stylecast serve --ray`: the server's own application as a Ray Serve deployment of 2 replicas on conftest's 2-CPU
Ray cluster. v1 and v2 round trips give the model's output, a burst is answered only 200 or 503, and SIGTERM takes
the application down and exits 0."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from stylecast.runtime.images import load_image
from stylecast.runtime.stylizer import Stylizer

from .conftest import DATA

ray = pytest.importorskip("ray", reason="the Ray Serve deployment needs its extra: pip install 'stylecast[ray]'")
httpx = pytest.importorskip("httpx")
pytestmark = pytest.mark.usefixtures("deadline")

PHOTO = DATA / "photos" / "chelsea.jpg"  # 72x48: 3456 pixels
START_SECONDS = 180


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def deployment(tiny_onnx, cluster, tmp_path_factory):
    """`stylecast serve --ray-address CLUSTER --replicas 2`, run as a user runs it, once it answers ready; its
    output goes to a file (Ray's logs would fill a pipe nobody reads). Its queue holds under three of the test
    photos, so a burst overflows it."""
    port = free_port()
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with open(log, "w") as output:
        server = subprocess.Popen([sys.executable, "-m", "stylecast.cli", "serve", "--model", str(tiny_onnx),
                                   "--ray-address", cluster, "--replicas", "2", "--port", str(port), "--max-queue-mp",
                                   "0.01"], env={**os.environ, "RAY_AUTH_MODE": "token"}, stdout=output,
                                  stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    started = time.monotonic()
    while True:
        assert server.poll() is None, log.read_text()
        assert time.monotonic() - started < START_SECONDS, "the deployment did not get ready"
        try:
            if httpx.get(f"{url}/v2/health/ready", timeout=5).status_code == 200:
                break
        except httpx.TransportError:
            pass
        time.sleep(1)
    yield url, server, log
    if server.poll() is None:
        server.kill()
        server.wait()


def test_two_replicas_answer_v1_as_the_model_does(deployment, tiny_onnx):
    url, _, _ = deployment
    from ray import serve

    assert serve.status().applications["stylecast"].deployments["stylecast"].replica_states == {"RUNNING": 2}
    answer = httpx.post(f"{url}/v1/stylize?style=tiny&format=png", content=PHOTO.read_bytes(), timeout=60)
    assert answer.status_code == 200 and answer.headers["content-type"] == "image/png"
    assert answer.headers["x-stylecast-model"] == "tiny_fp32"
    got = np.asarray(Image.open(io.BytesIO(answer.content)))
    with Stylizer(tiny_onnx) as stylizer:
        want = stylizer(load_image(PHOTO).rgb)
    assert got.shape == want.shape and np.abs(got.astype(int) - want.astype(int)).max() <= 1


def test_v2_infer_round_trip(deployment, tiny_onnx):
    url, _, _ = deployment
    tensor = load_image(PHOTO).rgb.transpose(2, 0, 1)[None].astype(np.float32)
    body = {"inputs": [{"name": "image", "shape": list(tensor.shape), "datatype": "FP32",
                        "data": tensor.ravel().tolist()}]}
    answer = httpx.post(f"{url}/v2/models/tiny_fp32/infer", json=body, timeout=60)
    assert answer.status_code == 200, answer.text
    (output,) = answer.json()["outputs"]
    assert output["name"] == "stylized" and output["shape"] == list(tensor.shape)
    with Stylizer(tiny_onnx) as stylizer:
        want = stylizer.forward(tensor)
    np.testing.assert_allclose(np.asarray(output["data"], np.float32).reshape(tensor.shape), want, atol=1e-3)
    assert httpx.get(f"{url}/v2/models/tiny_fp32/ready", timeout=10).status_code == 200

    # Binary tensors both ways, as Triton's clients send them: the answer's parts cross Ray's proxy pickled.
    import tritonclient.http as triton_http

    from stylecast.benchmarks.load.client import infer_call

    call = infer_call("tiny_fp32", tensor)
    binary = httpx.post(f"{url}{call.path}", content=call.body, headers=call.headers, timeout=60)
    assert binary.status_code == 200, binary.text
    header = int(binary.headers["Inference-Header-Content-Length"])
    result = triton_http.InferenceServerClient.parse_response_body(binary.content, header_length=header)
    np.testing.assert_allclose(result.as_numpy("stylized"), want, atol=1e-3)


def test_a_burst_gets_only_200_and_503(deployment):
    url, _, _ = deployment

    async def burst(count: int) -> list:
        async with httpx.AsyncClient(timeout=120) as client:
            return await asyncio.gather(*(client.post(f"{url}/v1/stylize?style=tiny", content=PHOTO.read_bytes())
                                          for _ in range(count)))

    answers = asyncio.run(burst(32))
    codes = Counter(answer.status_code for answer in answers)
    assert set(codes) <= {200, 503} and codes[200] >= 2 and codes[503] >= 1, codes
    assert all(int(a.headers["retry-after"]) >= 1 for a in answers if a.status_code == 503)
    assert "stylecast_requests_total" in httpx.get(f"{url}/metrics", timeout=10).text


def test_sigterm_takes_the_application_down_and_exits_0(deployment):
    url, server, log = deployment
    from ray import serve

    server.send_signal(signal.SIGTERM)
    server.wait(timeout=60)
    output = log.read_text()
    assert server.returncode == 0, output
    assert f"stylecast serve: {url} serving tiny_fp32 on Ray Serve, 2 replica(s)" in output
    assert "stylecast" not in serve.status().applications
