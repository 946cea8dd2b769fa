"""`stylecast evaluate` on tiny models and hand-made outputs; style strength and model chains in the runtime."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from stylecast.benchmarks.quality.evaluate import find_output
from stylecast.runtime.errors import StylecastError
from stylecast.runtime.stylizer import Stylizer
from stylecast.train.vgg import save_random_loss_net

from .conftest import run_cli


@pytest.fixture(scope="module")
def random_vgg16(tmp_path_factory):
    """All 13 VGG16 convs (evaluate scores at relu5_1), random weights: tests only."""
    return save_random_loss_net(tmp_path_factory.mktemp("vgg16full") / "vgg16-random.safetensors", convs=13)


def _copies(photos, folder, size=32):
    """'Outputs' that are the photos themselves, with a sidecar giving a time."""
    folder.mkdir()
    for photo in sorted(photos.glob("*.jpg"))[:2]:
        img = Image.open(photo).convert("RGB")
        img.thumbnail((size, size))
        img.save(folder / f"{photo.stem}.png")
        (folder / f"{photo.stem}.png.json").write_text(json.dumps({"seconds": 1.5}))
    return sorted(photos.glob("*.jpg"))[:2]


def test_evaluate_scores_runs_and_reads_methods(tmp_path, photos, style_image, tiny_onnx, random_vgg16):
    contents = _copies(photos, tmp_path / "same")
    out = tmp_path / "eval"
    result = run_cli("evaluate", *map(str, contents), "--style", str(style_image), "--method", f"ff={tiny_onnx}",
                     "--method", f"same={tmp_path / 'same'}", "--out", str(out), "--size", "32",
                     "--loss-net-weights", str(random_vgg16))
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "report.json").read_text())
    rows = {row["method"]: row for row in report["summary"]}
    assert set(rows) == {"content (no style)", "ff", "same"}
    assert rows["content (no style)"]["content_loss"] == 0 and rows["content (no style)"]["ssim"] == pytest.approx(1)
    assert rows["same"]["content_loss"] < 0.05 and rows["same"]["seconds_per_image"] == 1.5
    assert rows["same"]["timing"] == ["sidecar"]
    assert rows["ff"]["timing"] == ["measured"] and rows["ff"]["seconds_per_image"] > 0
    assert rows["ff"]["content_loss"] > rows["same"]["content_loss"] and rows["ff"]["style_loss"] > 0
    assert report["loss_network"]["content_layer"] == "relu4_2" and "random" in report["loss_network"]["weights"]
    assert report["fid"].startswith("not computed")
    table = (out / "report.md").read_text()
    assert "| method | content loss | style loss |" in table and "| ff |" in table and "FID: not computed" in table
    assert sorted(p.name for p in (out / "ff").iterdir()) == sorted(f"{p.stem}.png" for p in contents)
    sheet = Image.open(out / "contact.png")
    assert sheet.size[0] > 3 * 64 and sheet.size[1] > 2 * 256


def test_evaluate_refuses_outputs_of_another_photo(tmp_path, photos, style_image, random_vgg16):
    contents = _copies(photos, tmp_path / "m")
    (tmp_path / "m" / f"{contents[0].stem}.png.json").write_text(json.dumps({"content_sha256": "0" * 64}))
    result = run_cli("evaluate", str(contents[0]), "--style", str(style_image), "--method", f"m={tmp_path / 'm'}",
                     "--out", str(tmp_path / "eval"), "--size", "32", "--loss-net-weights", str(random_vgg16))
    assert result.returncode == 2 and "made from another photo" in result.stderr
    assert "Traceback" not in result.stderr


def test_find_output_needs_exactly_one_candidate(tmp_path, photos):
    (tmp_path / "coffee.png").write_bytes(b"")
    (tmp_path / "coffee.loss.png").write_bytes(b"")  # a loss curve is never an output
    assert find_output(tmp_path, photos / "coffee.jpg").name == "coffee.png"
    (tmp_path / "coffee.wave.jpg").write_bytes(b"")
    with pytest.raises(StylecastError, match="2 candidate outputs"):
        find_output(tmp_path, photos / "coffee.jpg")
    with pytest.raises(StylecastError, match="no output for rocket.jpg"):
        find_output(tmp_path, photos / "rocket.jpg")


def test_strength_blends_with_the_photo(tiny_onnx):
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 255, (24, 20, 3), dtype=np.uint8)
    full = Stylizer(tiny_onnx)(photo).astype(int)
    assert np.array_equal(Stylizer(tiny_onnx, strength=0.0)(photo), photo)
    half = Stylizer(tiny_onnx, strength=0.5)(photo).astype(int)
    assert np.abs(half - (full + photo.astype(int)) / 2).max() <= 1
    with pytest.raises(StylecastError, match="--strength 1.5"):
        Stylizer(tiny_onnx, strength=1.5)


def test_chained_models_feed_each_other_in_float(tiny_onnx):
    rng = np.random.default_rng(1)
    photo = rng.integers(0, 255, (24, 20, 3), dtype=np.uint8)
    chain = Stylizer([tiny_onnx, tiny_onnx])
    backend = chain.backends[0]
    once = backend.run(photo.transpose(2, 0, 1)[None].astype(np.float32))
    twice = np.clip(np.rint(backend.run(once)), 0, 255).astype(np.uint8)[0].transpose(1, 2, 0)
    assert np.array_equal(chain(photo), twice)
    assert chain.style == "tiny" and len(chain.backends) == 2


def test_stylize_cli_chains_and_blends(tiny_onnx, photos, tmp_path):
    """Two chained models at strength 0.5: the pixels are half the photo and half model(model(photo))."""
    import onnxruntime as ort

    inputs = tmp_path / "in"
    inputs.mkdir()
    photo = np.asarray(Image.open(photos / "coffee.jpg").convert("RGB"))
    Image.fromarray(photo).save(inputs / "coffee.png")  # lossless in and out, so pixels can be compared
    result = run_cli("stylize", str(inputs), "--model", str(tiny_onnx), "--model", str(tiny_onnx),
                     "--strength", "0.5", "--out", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    got = np.asarray(Image.open(tmp_path / "out" / "coffee.tiny.png").convert("RGB")).astype(np.float64)
    session = ort.InferenceSession(str(tiny_onnx), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    x = photo.transpose(2, 0, 1)[None].astype(np.float32)
    twice = session.run(None, {name: session.run(None, {name: x})[0]})[0]
    once = session.run(None, {name: x})[0]
    expected = np.clip(np.rint(0.5 * twice + 0.5 * x), 0, 255)[0].transpose(1, 2, 0)
    assert np.abs(got - expected).max() <= 1
    single = np.clip(np.rint(once), 0, 255)[0].transpose(1, 2, 0)
    assert np.abs(got - single).mean() > 1 and np.abs(got - photo).mean() > 1  # neither one pass nor the photo


def test_frechet_distance_matches_the_closed_form():
    from stylecast.benchmarks.quality.fid import frechet_distance

    rng = np.random.default_rng(0)
    a = rng.normal(size=(400, 6))
    assert frechet_distance(a, a) == pytest.approx(0, abs=1e-9)
    # Same covariance, shifted mean: FID is the squared shift.
    assert frechet_distance(a, a + np.arange(6)) == pytest.approx(float((np.arange(6) ** 2).sum()), rel=1e-9)
    # b = 3a: C_b = 9 C_a, so (C_a C_b)^1/2 = 3 C_a and FID = |2 mu_a|^2 + Tr(C_a + 9 C_a - 6 C_a).
    cov = np.cov(a, rowvar=False)
    expected = 4 * float((a.mean(axis=0) ** 2).sum() + np.trace(cov))
    assert frechet_distance(a, 3 * a) == pytest.approx(expected, rel=1e-9)
    with pytest.raises(StylecastError, match="at least 2"):
        frechet_distance(a[:1], a)


class _PoolFeatures(torch.nn.Module):
    """Test stand-in with the TorchScript Inception's call signature: (N,3,299,299) in [0,255] -> (N,2048)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.project = torch.nn.Conv2d(3, 2048, 8, stride=8)

    def forward(self, x: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        return torch.relu(self.project(x / 255.0)).mean(dim=(2, 3))


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")  # the weights' own format
def test_evaluate_reports_fid_with_supplied_weights(tmp_path, photos, style_image, tiny_onnx, random_vgg16):
    weights = tmp_path / "inception.pt"
    torch.jit.script(_PoolFeatures()).save(str(weights))
    contents = _copies(photos, tmp_path / "same")
    out = tmp_path / "eval"
    args = ["evaluate", *map(str, contents), "--style", str(style_image), "--method", f"ff={tiny_onnx}",
            "--method", f"same={tmp_path / 'same'}", "--out", str(out), "--size", "32",
            "--loss-net-weights", str(random_vgg16)]
    result = run_cli(*args, "--fid-weights", str(weights), "--fid-reference", str(photos))
    assert result.returncode == 0, result.stderr
    fid = json.loads((out / "report.json").read_text())["fid"]
    assert fid["weights"] == "inception.pt" and fid["reference_images"] == len(list(photos.glob("*.jpg")))
    assert fid["images_per_method"] == 2 and set(fid["values"]) == {"content (no style)", "ff", "same"}
    # The 'same' outputs are the photos themselves: as far from the reference as the photos are.
    assert fid["values"]["same"] == pytest.approx(fid["values"]["content (no style)"], rel=0.05)
    assert fid["values"]["ff"] != pytest.approx(fid["values"]["same"], rel=0.05)
    assert "FID (inception.pt, 2 images per method" in (out / "report.md").read_text()
    no_reference = run_cli(*args, "--fid-weights", str(weights))
    assert no_reference.returncode == 2 and "--fid-reference" in no_reference.stderr
    (tmp_path / "bad.pt").write_bytes(b"not torchscript")
    bad = run_cli(*args, "--fid-weights", str(tmp_path / "bad.pt"), "--fid-reference", str(photos))
    assert bad.returncode == 2 and "bad.pt" in bad.stderr and "Traceback" not in bad.stderr
