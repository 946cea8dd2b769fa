"""`stylecast serve` with a multi-style model beside a single-style one, against one real server process:
/v1/styles lists every style, /v1/stylize picks a style or blends several in one pass (as the Stylizer paints that
choice), requests in different styles share a batch, the v2 protocol takes the style as a tensor or a parameter and
shows both inputs in its metadata and config (as the Triton repository's config.pbtxt does), hostile style inputs are
one-line 4xx, and the page's blend control."""

from __future__ import annotations

import asyncio
import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from stylecast.benchmarks.load.browser import headless_chromium, missing_browser
from stylecast.benchmarks.load.client import request_counts, scrape
from stylecast.benchmarks.load.server import running_server
from stylecast.runtime.media import run_image
from stylecast.runtime.stylizer import Stylizer
from stylecast.serve.models import ModelSet, serve_tiling
from stylecast.serve.ray_serve import paintings_of

from .conftest import DATA, MULTI_STYLES, export_tiny_net

MULTI, SOLO = "trio_fp32", "solo_fp32"
WINDOW_MS = 300  # long enough that concurrent requests share a batch on a busy 2-core box
BATCH_PIXELS = 4000  # --max-batch-mp 0.004: three 40x30 photos batch, a 100x67 one is tiled


@pytest.fixture(scope="module")
def solo_onnx(tmp_path_factory, photos) -> Path:
    return export_tiny_net(tmp_path_factory.mktemp("solo"), "solo", 1, photos)


@pytest.fixture(scope="module")
def styles_dir(tmp_path_factory) -> Path:
    """Paintings for wave (a style of the multi-style model) and solo; none for starry_night and candy."""
    folder = tmp_path_factory.mktemp("styles")
    for name in ("wave", "solo"):
        shutil.copy(DATA / "style.jpg", folder / f"{name}.jpg")
    return folder


@pytest.fixture(scope="module")
def server(tiny_multi_onnx, solo_onnx, styles_dir):
    with running_server([tiny_multi_onnx, solo_onnx], "--styles-dir", str(styles_dir), "--max-batch", "4",
                        "--batch-window-ms", str(WINDOW_MS), "--max-batch-mp", str(BATCH_PIXELS / 1e6)) as process:
        yield process


def _photo(width: int, height: int) -> np.ndarray:
    return np.asarray(Image.open(DATA / "photos" / "chelsea.jpg").convert("RGB").resize((width, height)))


def _png(rgb: np.ndarray) -> bytes:
    data = io.BytesIO()
    Image.fromarray(rgb).save(data, "PNG")
    return data.getvalue()


def _stylize(url: str, rgb: np.ndarray, **params: str) -> tuple[np.ndarray, httpx.Response]:
    answer = httpx.post(f"{url}/v1/stylize", content=_png(rgb), params=params, timeout=60)
    assert answer.status_code == 200, answer.text[:300]
    return np.asarray(Image.open(io.BytesIO(answer.content)).convert("RGB")), answer


def _grey_levels_apart(a: np.ndarray, b: np.ndarray) -> int:
    assert a.shape == b.shape
    return int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max())


def _one_line_error(answer: httpx.Response) -> str:
    assert 400 <= answer.status_code < 500, f"{answer.status_code}: {answer.text[:300]}"
    message = answer.json()["error"]
    assert isinstance(message, str) and 0 < len(message) < 400 and "\n" not in message and "Traceback" not in message
    return message


def _executions(url: str, model: str) -> int:
    (stats,) = httpx.get(f"{url}/v2/models/{model}/stats").json()["model_stats"]
    return stats["execution_count"]


def test_styles_lists_each_style_of_a_multi_style_model_beside_single_style_ones(server, tiny_multi_onnx, styles_dir):
    styles = httpx.get(f"{server.url}/v1/styles").json()
    assert [(s["name"], s["model"], s["multi_style"], s["thumbnail"]) for s in styles] == [
        ("wave", MULTI, True, f"/v1/styles/{MULTI}/wave/thumbnail.jpg"),
        ("starry_night", MULTI, True, None),
        ("candy", MULTI, True, None),
        ("solo", SOLO, False, f"/v1/styles/{SOLO}/thumbnail.jpg"),
    ]
    for path in (styles[0]["thumbnail"], styles[3]["thumbnail"], f"/v1/styles/{MULTI}/thumbnail.jpg"):
        answer = httpx.get(server.url + path)
        assert answer.status_code == 200 and Image.open(io.BytesIO(answer.content)).format == "JPEG", path
    for path in (f"/v1/styles/{MULTI}/candy/thumbnail.jpg", f"/v1/styles/{SOLO}/wave/thumbnail.jpg"):
        assert "no thumbnail" in _one_line_error(httpx.get(server.url + path)), path
    assert httpx.get(f"{server.url}/v1/styles/{MULTI}/..%2f{SOLO}/thumbnail.jpg").status_code == 404
    # serve --ray ships the paintings of every style to its replicas
    assert sorted(paintings_of([tiny_multi_onnx], styles_dir)) == ["wave.jpg"]


@pytest.mark.parametrize("params", [{"style": "starry_night"}, {"style": "candy", "model": MULTI},
                                    {"style": "wave=0.6,starry_night=0.4"}, {"style": "wave=1, candy=3"},
                                    {"style": "starry_night=0.5,candy=0.5", "strength": "0.6"}, {"style": MULTI},
                                    {"model": MULTI}])
def test_a_style_or_a_blend_paints_as_the_stylizer_does(server, tiny_multi_onnx, params):
    rgb = _photo(72, 48)
    choice = params.get("style") if params.get("style") != MULTI else None  # a model's name: its first style
    expected = Stylizer(tiny_multi_onnx, style=choice, strength=float(params.get("strength", 1)))
    got, answer = _stylize(server.url, rgb, **params)
    assert _grey_levels_apart(got, expected(rgb)) <= 1
    assert answer.headers["x-stylecast-model"] == MULTI and answer.headers["x-stylecast-style"] == expected.style


def test_the_single_style_model_is_picked_as_before(server, solo_onnx):
    rgb = _photo(72, 48)
    for params in ({"style": "solo"}, {"style": SOLO}, {"model": SOLO}, {"model": SOLO, "style": "solo"}):
        got, answer = _stylize(server.url, rgb, **params)
        assert _grey_levels_apart(got, Stylizer(solo_onnx)(rgb)) <= 1, params
        assert answer.headers["x-stylecast-model"] == SOLO and answer.headers["x-stylecast-style"] == "solo"


def test_requests_in_different_styles_share_a_batch_and_paint_as_alone(server):
    """Three concurrent /v1 requests in three styles run as one batch, then two v2 requests (a style parameter and a
    style tensor); each image comes out as it does alone."""
    rgb = _photo(40, 30)
    choices = ["candy", "wave=0.6,starry_night=0.4", "starry_night"]
    alone = [_stylize(server.url, rgb, style=choice)[0] for choice in choices]

    async def together() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=60) as client:
            return await asyncio.gather(*(client.post(f"{server.url}/v1/stylize", content=_png(rgb),
                                                      params={"style": choice}) for choice in choices))

    before = _executions(server.url, MULTI)
    answers = asyncio.run(together())
    assert _executions(server.url, MULTI) - before == 1  # one batch for the three styles
    for choice, answer, single in zip(choices, answers, alone, strict=True):
        assert answer.status_code == 200, answer.text[:300]
        assert _grey_levels_apart(np.asarray(Image.open(io.BytesIO(answer.content))), single) <= 1, choice

    image = rgb.transpose(2, 0, 1)[None].astype(np.float32)
    tensor = {"name": "image", "datatype": "FP32", "shape": list(image.shape), "data": image.ravel().tolist()}
    onehot = {"name": "style", "datatype": "FP32", "shape": [1, 3], "data": [0.0, 0.0, 1.0]}
    bodies = [{"inputs": [tensor], "parameters": {"style": "starry_night"}}, {"inputs": [tensor, onehot]}]
    url = f"{server.url}/v2/models/{MULTI}/infer"
    v2_alone = [np.asarray(httpx.post(url, json=body).json()["outputs"][0]["data"]) for body in bodies]

    async def v2_together() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=60) as client:
            return await asyncio.gather(*(client.post(url, json=body) for body in bodies))

    before = _executions(server.url, MULTI)
    answers = asyncio.run(v2_together())
    assert _executions(server.url, MULTI) - before == 1
    for answer, single in zip(answers, v2_alone, strict=True):
        np.testing.assert_allclose(np.asarray(answer.json()["outputs"][0]["data"]), single, atol=1e-3)


def test_a_tiled_request_is_painted_in_its_style(server, tiny_multi_onnx):
    """An image above the batch budget runs in tiles under the whole image's statistics, in the asked blend."""
    rgb = _photo(100, 67)
    tile, overlap = serve_tiling(ModelSet([tiny_multi_onnx], Path("no-styles")).models[MULTI], BATCH_PIXELS)
    choice = "wave=0.3,candy=0.7"
    got, answer = _stylize(server.url, rgb, style=choice)
    assert _grey_levels_apart(got, run_image(Stylizer(tiny_multi_onnx, style=choice), rgb, tile, overlap)) <= 1
    assert answer.headers["x-stylecast-style"] == "wave30-candy70"


def test_v2_takes_the_style_as_a_tensor_or_a_parameter(server, tiny_multi_onnx, solo_onnx, tmp_path):
    """Triton's own client: metadata and config show the second input (as `stylecast export --triton` writes it to
    config.pbtxt); the style tensor in binary or JSON, the ``style`` parameter, or neither (the first style)."""
    import tritonclient.http as triton
    from google.protobuf import json_format, text_format
    from tritonclient.grpc import model_config_pb2

    from stylecast.export.triton import export_repository

    client = triton.InferenceServerClient(server.url.removeprefix("http://"))
    assert client.get_model_metadata(MULTI)["inputs"] == [
        {"name": "image", "datatype": "FP32", "shape": [-1, 3, -1, -1]},
        {"name": "style", "datatype": "FP32", "shape": [-1, 3]}]
    assert [i["name"] for i in client.get_model_metadata(SOLO)["inputs"]] == ["image"]
    config = client.get_model_config(MULTI)
    assert config["input"][1] == {"name": "style", "data_type": "TYPE_FP32", "dims": [3]}
    (folder,) = export_repository(tmp_path / "repo", [tiny_multi_onnx], max_batch_size=4)
    exported = text_format.Parse((folder / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    served = json_format.ParseDict(config, model_config_pb2.ModelConfig())
    served.dynamic_batching.max_queue_delay_microseconds = 0  # the one thing the server adds: its batch window
    assert served == exported
    assert [i["name"] for i in client.get_model_config(SOLO)["input"]] == ["image"]

    images = np.stack([_photo(48, 40), _photo(48, 40)[::-1]]).transpose(0, 3, 1, 2).astype(np.float32)
    stylizer = Stylizer(tiny_multi_onnx)
    rows = np.stack([stylizer.weights("candy"), stylizer.weights("wave=0.25,starry_night=0.75")])

    def infer(rows: np.ndarray | None, binary: bool, **kwargs: object) -> np.ndarray:
        inputs = [triton.InferInput("image", list(images.shape), "FP32")]
        inputs[0].set_data_from_numpy(images, binary_data=binary)
        if rows is not None:
            inputs.append(triton.InferInput("style", list(rows.shape), "FP32"))
            inputs[1].set_data_from_numpy(rows, binary_data=binary)
        output = triton.InferRequestedOutput("stylized", binary_data=binary)
        return client.infer(MULTI, inputs, outputs=[output], **kwargs).as_numpy("stylized")

    for binary in (True, False):
        np.testing.assert_allclose(infer(rows, binary), stylizer.forward(images, style=rows), atol=1e-3)
    scaled = infer(rows * 4, True)  # rows are scaled to sum 1, as a blend's weights are
    np.testing.assert_allclose(scaled, stylizer.forward(images, style=rows), atol=1e-3)
    for choice in ("starry_night", "wave=0.6,candy=0.4"):
        expected = Stylizer(tiny_multi_onnx, style=choice).forward(images)
        np.testing.assert_allclose(infer(None, True, parameters={"style": choice}), expected, atol=1e-3)
    np.testing.assert_allclose(infer(None, False), Stylizer(tiny_multi_onnx, style="wave").forward(images), atol=1e-3)


def _v2_cases() -> dict[str, tuple[str, bytes, dict[str, str], int, str]]:
    """(model, body, headers, status, what the message must name) of hostile v2 style inputs."""
    image = {"name": "image", "datatype": "FP32", "shape": [2, 3, 16, 16], "data": [0.5] * 1536}
    style = {"name": "style", "datatype": "FP32", "shape": [2, 3], "data": [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]}

    def body(style_changes: dict | None = None, **changes: object) -> bytes:
        inputs = [image] if style_changes is None else [image, {**style, **style_changes}]
        return json.dumps({"inputs": inputs, **changes}).encode()

    raw = np.array([[1, 0, 0], [np.nan, 1, 0]], "<f4").tobytes()
    header = json.dumps({"inputs": [image, {**style, "data": None, "parameters": {"binary_data_size": len(raw)}}]})
    binary = {"Inference-Header-Content-Length": str(len(header))}
    return {
        "wrong N": (MULTI, body({"shape": [2, 2], "data": [1.0] * 4}), {}, 400, "input 'style'"),
        "wrong batch": (MULTI, body({"shape": [1, 3], "data": [1.0, 0, 0]}), {}, 400, "input 'style'"),
        "boolean dim": (MULTI, body({"shape": [True, 3]}), {}, 400, "input 'style'"),
        "rank 3": (MULTI, body({"shape": [2, 3, 1]}), {}, 400, "input 'style'"),
        "negative": (MULTI, body({"data": [1.0, 0, 0, -1.0, 2.0, 0]}), {}, 400, "input 'style'"),
        "zero row": (MULTI, body({"data": [1.0, 0, 0, 0, 0, 0]}), {}, 400, "input 'style'"),
        "NaN in binary": (MULTI, header.encode() + raw, binary, 400, "input 'style'"),
        "short binary": (MULTI, header.encode() + raw[:-4], binary, 400, "inputs[1].parameters.binary_data_size"),
        "strings": (MULTI, body({"data": ["wave"] * 6}), {}, 400, "inputs[1].data"),
        "too many values": (MULTI, body({"data": [1.0] * 7}), {}, 400, "inputs[1].data"),
        "INT32": (MULTI, body({"datatype": "INT32"}), {}, 400, "input 'style'"),
        "twice": (MULTI, json.dumps({"inputs": [image, style, style]}).encode(), {}, 400, "'style'"),
        "no image": (MULTI, json.dumps({"inputs": [style]}).encode(), {}, 400, "'image'"),
        "single-style model": (SOLO, body({"shape": [2, 1], "data": [1.0, 1.0]}), {}, 400, "takes no 'style'"),
        "tensor and parameter": (MULTI, body({}, parameters={"style": "wave"}), {}, 400, "parameters.style"),
        "parameter number": (MULTI, body(parameters={"style": 3}), {}, 400, "parameters.style"),
        "parameter unknown": (MULTI, body(parameters={"style": "monet"}), {}, 400, "wave, starry_night, candy"),
        "parameter other model": (SOLO, body(parameters={"style": "wave"}), {}, 400, "this model has solo"),
        "parameter negative": (MULTI, body(parameters={"style": "wave=-1,candy=2"}), {}, 400, "negative"),
        "parameter zero": (MULTI, body(parameters={"style": "wave=0"}), {}, 400, "sum to 0"),
        "parameter path": (MULTI, body(parameters={"style": "../../etc/passwd"}), {}, 400, "invalid style name"),
        "parameter long": (MULTI, body(parameters={"style": "wave=1," * 200}), {}, 400, "longer than"),
    }


V2_CASES = _v2_cases()
V1_CASES = {  # query parameters, status, what the message must name
    "unknown style": ({"style": "monet"}, 404, "available: candy, solo, solo_fp32, starry_night, trio_fp32, wave"),
    "unknown in a blend": ({"style": "wave=0.5,monet=0.5"}, 404, "monet"),
    "blend across models": ({"style": "wave=0.5,solo=0.5"}, 400, f"{MULTI}: wave, starry_night, candy"),
    "other model's style": ({"model": SOLO, "style": "wave"}, 404, "available: solo, solo_fp32"),
    "unknown model": ({"model": "trio_int8", "style": "wave"}, 404, f"loaded: {MULTI}, {SOLO}"),
    "negative weight": ({"style": "wave=-1,candy=2"}, 400, "negative"),
    "zero weights": ({"style": "wave=0,candy=0"}, 400, "sum to 0"),
    "weight not a number": ({"style": "wave=much"}, 400, "not a number"),
    "infinite weight": ({"style": "wave=1e999"}, 400, "finite"),
    "NaN weight": ({"style": "wave=nan,candy=1"}, 400, "finite"),
    "named twice": ({"style": "wave=1,wave=2"}, 400, "twice"),
    "empty": ({"style": ""}, 400, "name one style"),
    "only commas": ({"style": ",,"}, 400, "name one style"),
    "newline in a name": ({"style": "wa\nve=1"}, 400, "not plain names"),
    "path in a blend": ({"style": "../wave=1,candy=1"}, 400, "invalid style name"),
    "too long": ({"style": "wave=1," * 100}, 422, "style"),
}


@pytest.mark.parametrize("case", list(V1_CASES) + [f"v2 {case}" for case in V2_CASES])
def test_hostile_style_inputs_are_one_line_4xx(server, case):
    if case.startswith("v2 "):
        model, body, headers, status, names = V2_CASES[case.removeprefix("v2 ")]
        answer = httpx.post(f"{server.url}/v2/models/{model}/infer", content=body, headers=headers, timeout=30)
    else:
        params, status, names = V1_CASES[case]
        answer = httpx.post(f"{server.url}/v1/stylize", content=_png(_photo(40, 30)), params=params, timeout=30)
    message = _one_line_error(answer)
    assert answer.status_code == status and names in message, message


def test_no_style_fault_was_a_500(server):
    """Run after the hostile cases: the server's own counts hold no 500 on either route."""
    text = scrape(server.url)
    assert request_counts(text, "/v1/stylize")[500] == 0
    assert request_counts(text, "/v2/models/{name}/infer")[500] == 0


def _page_function(source: str, name: str) -> str:
    """One top-level function of the page's script, by its name (it ends at the first unindented brace)."""
    match = re.search(rf"^function {name}\(.*?^\}}$", source, re.S | re.M)
    assert match, name
    return match.group(0)


def test_the_page_has_a_blend_control_that_sends_what_the_stylizer_paints(server, tiny_multi_onnx):
    """Without a browser: the served page holds the hidden blend control, its script parses, and the choice its
    slider makes (run in Node where installed) paints as the Stylizer's blend."""
    page = httpx.get(server.url + "/").text
    assert re.search(r'<section id="blend"[^>]*\bhidden\b', page)
    for element in ('id="blend-a"', 'id="blend-b"', 'id="blend-mix"', 'id="blend-value"'):
        assert element in page, element
    script = httpx.get(server.url + "/page/app.js").text
    assert "multi_style" in script and 'query.set("style"' in script
    node = shutil.which("node")
    if node is None:
        pytest.skip("the page script's checks need Node (apt-get install nodejs)")
    assert subprocess.run([node, "--check", "serve/page/app.js"], capture_output=True).returncode == 0
    chooser = _page_function(script, "blendChoice")
    said = subprocess.run([node, "-e", chooser + "\nconsole.log(JSON.stringify([blendChoice('wave', 'candy', 0.4), "
                                                 "blendChoice('wave', 'candy', 0), blendChoice('wave', 'candy', 1), "
                                                 "blendChoice('candy', 'candy', 0.5)]))"],
                          capture_output=True, text=True, check=True).stdout
    blend, *ends = json.loads(said)
    assert blend == "wave=0.60,candy=0.40" and ends == ["wave", "candy", "candy"]
    rgb = _photo(72, 48)
    got, _ = _stylize(server.url, rgb, model=MULTI, style=blend)
    assert _grey_levels_apart(got, Stylizer(tiny_multi_onnx, style="wave=0.6,candy=0.4")(rgb)) <= 1


@pytest.mark.skipif(missing_browser() is not None, reason=f"browser test: {missing_browser()}")
def test_the_page_blends_two_styles_in_a_browser(server, tmp_path):
    """Headless Chromium: the blend control shows for the multi-style model's styles only; two styles and the
    slider's mix are sent, and the server's answer names that blend."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    photo = tmp_path / "chelsea.png"
    photo.write_bytes(_png(_photo(72, 48)))
    driver = headless_chromium()
    try:
        driver.get(server.url)
        wait = WebDriverWait(driver, 60)
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".style[aria-pressed='true']"))
        blend = driver.find_element(By.ID, "blend")
        first, other = Select(driver.find_element(By.ID, "blend-a")), Select(driver.find_element(By.ID, "blend-b"))
        assert blend.is_displayed()  # the first card is the multi-style model's first style
        assert [o.get_attribute("value") for o in first.options] == MULTI_STYLES
        assert (first.first_selected_option.text, other.first_selected_option.text) == ("wave", "starry_night")
        driver.find_element(By.CSS_SELECTOR, f".style[data-model='{SOLO}']").click()
        assert not blend.is_displayed()
        driver.find_element(By.CSS_SELECTOR, f".style[data-model='{MULTI}'][data-style='candy']").click()
        assert blend.is_displayed() and first.first_selected_option.text == "candy"
        other.select_by_value("wave")
        driver.execute_script("const mix = document.getElementById('blend-mix'); mix.value = '0.4';"
                              "mix.dispatchEvent(new Event('input'));")
        assert driver.find_element(By.ID, "blend-value").text == "candy 60% · wave 40%"
        driver.find_element(By.ID, "file").send_keys(str(photo))
        wait.until(lambda d: d.find_element(By.ID, "status").text.startswith("Done:"))
        assert driver.find_element(By.ID, "status").text.startswith(f"Done: {MULTI} (wave40-candy60)")
        assert driver.find_element(By.ID, "download").get_attribute("download") == "chelsea.wave40-candy60.png"
        assert [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"] == []
    finally:
        driver.quit()
