"""Gatys optimisation on tiny images with the random test VGG: it optimises, it is deterministic, it keeps colour."""

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image

from stylecast.runtime.errors import StylecastError
from stylecast.train.gatys.cli import parse_list, parse_weighted
from stylecast.train.gatys.color import luminance, match_colour, with_chroma_of
from stylecast.train.gatys.optimize import GatysConfig, GatysOptimizer, to_tensor
from stylecast.train.losses import RelativeStyleLoss, style_grams
from stylecast.train.vgg import VGGFeatures

from .conftest import run_cli

# The test VGG stops at conv4_3, so the style layers stop at relu4_1.
LAYERS = ["relu1_1", "relu2_1", "relu3_1", "relu4_1"]
TINY = ["--style-layers", ",".join(LAYERS), "--scales", "32", "--steps", "3"]


@pytest.fixture(scope="module")
def vgg(tiny_vgg):
    return VGGFeatures("vgg16", ["relu4_2", *LAYERS], tiny_vgg)


@pytest.fixture(scope="module")
def images(photos, style_image):
    def load(path):
        return np.asarray(Image.open(path).convert("RGB").resize((40, 32)))
    return load(photos / "coffee.jpg"), load(style_image)


def _run(vgg, images, **overrides):
    config = GatysConfig(**{"scales": [32], "steps": [6], "style_layers": LAYERS, **overrides})
    reports = []
    result = GatysOptimizer(vgg, config).run(images[0], [(images[1], 1.0)], reports.append)
    return result, reports


@pytest.mark.parametrize("optimizer,precision", [("lbfgs", "fp32"), ("adam", "fp32"), ("lbfgs", "bf16")])
def test_optimiser_lowers_the_loss(vgg, images, optimizer, precision):
    result, reports = _run(vgg, images, optimizer=optimizer, init="noise", precision=precision)
    assert result.shape == (26, 32, 3) and result.dtype == np.uint8
    assert [r.step for r in reports] == list(range(1, 7))
    assert reports[-1].losses["total"] < reports[0].losses["total"]


def test_same_seed_same_image_other_seed_other_image(vgg, images):
    first, _ = _run(vgg, images, init="noise", seed=3)
    again, _ = _run(vgg, images, init="noise", seed=3)
    other, _ = _run(vgg, images, init="noise", seed=4)
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


def test_multi_scale_runs_coarse_to_fine(vgg, images):
    result, reports = _run(vgg, images, scales=[16, 32], steps=[2, 3])
    assert [r.scale for r in reports] == [16, 16, 32, 32, 32]
    assert result.shape == (26, 32, 3)
    assert reports[1].image().shape == (13, 16, 3)  # a snapshot mid-run has the size of its scale


def test_lbfgs_keeps_descending_after_each_upsampling(vgg, images):
    """Regression: with mean losses and clamped steps, L-BFGS stood still from the second scale on."""
    _, reports = _run(vgg, images, scales=[32, 64], steps=[4, 4])
    second = [r.losses["total"] for r in reports if r.scale == 64]
    assert second[-1] < 0.9 * second[0]


def test_style_init_starts_from_the_painting(vgg, images):
    _, reports = _run(vgg, images, init="style", steps=[1])
    _, from_content = _run(vgg, images, steps=[1])
    assert reports[0].losses["content"] > from_content[0].losses["content"]


def test_luminance_preservation_keeps_the_photos_colours(vgg, images):
    result, _ = _run(vgg, images, preserve_color="luminance")
    photo = np.asarray(Image.fromarray(images[0]).resize((32, 26), Image.Resampling.LANCZOS))
    chroma = lambda rgb: np.asarray(Image.fromarray(rgb).convert("YCbCr"))[..., 1:].astype(int)  # noqa: E731
    assert np.abs(chroma(result) - chroma(photo)).mean() < 3


def test_blended_styles_average_their_grams(vgg, images):
    content, style = to_tensor(images[0]), to_tensor(images[1])
    other = to_tensor(images[0][::-1].copy())
    single = RelativeStyleLoss(vgg, content, [(style, 1.0)], style_layers=tuple(LAYERS))
    halves = RelativeStyleLoss(vgg, content, [(style, 0.3), (style, 0.3)], style_layers=tuple(LAYERS))
    mixed = RelativeStyleLoss(vgg, content, [(style, 3.0), (other, 1.0)], style_layers=tuple(LAYERS))
    alone = RelativeStyleLoss(vgg, content, [(other, 1.0)], style_layers=tuple(LAYERS))
    for layer in LAYERS:
        a, b = getattr(single, f"gram_{layer}"), getattr(alone, f"gram_{layer}")
        assert torch.allclose(getattr(halves, f"gram_{layer}"), a)
        assert torch.allclose(getattr(mixed, f"gram_{layer}"), 0.75 * a + 0.25 * b)
    # Grams computed once (as `evaluate` does for every photo) give the same loss as the style images.
    shared = RelativeStyleLoss(vgg, content, style_grams(vgg, [(style, 1.0)], tuple(LAYERS)), style_layers=tuple(LAYERS))
    image = to_tensor(images[0][:, ::-1].copy())
    with torch.no_grad():
        assert {k: float(v) for k, v in shared(image).items()} == {k: float(v) for k, v in single(image).items()}


def test_colour_matching_gives_the_style_the_photos_statistics():
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:40, 0:40]
    photo = np.stack([x * 3 + 40, y * 2 + 60, (x + y) + 50], -1).astype(np.uint8)
    style = np.clip(rng.normal([60, 120, 180], [20, 15, 10], (40, 40, 3)), 0, 255).astype(np.uint8)
    matched = match_colour(style, photo)
    flat = lambda a: a.reshape(-1, 3).astype(float)  # noqa: E731
    assert np.allclose(flat(matched).mean(0), flat(photo).mean(0), atol=1.0)
    assert np.allclose(np.cov(flat(matched), rowvar=False), np.cov(flat(photo), rowvar=False), rtol=0.05, atol=3)


def test_chroma_transfer_takes_luma_from_one_and_colour_from_the_other():
    rng = np.random.default_rng(1)
    stylized = rng.integers(70, 190, (16, 16, 3), dtype=np.uint8)  # luma in a range the photo's hue can reach
    photo = np.full((16, 16, 3), (150, 120, 100), np.uint8)
    mixed = with_chroma_of(stylized, photo)
    assert np.abs(luminance(mixed).astype(int) - luminance(stylized).astype(int)).max() <= 2
    chroma = np.asarray(Image.fromarray(mixed).convert("YCbCr"))[..., 1:].astype(int)
    target = np.asarray(Image.fromarray(photo).convert("YCbCr"))[..., 1:].astype(int)
    assert np.abs(chroma - target).max() <= 2


def test_style_specs_parse_weights_and_keep_colons_in_paths():
    assert parse_weighted("a.jpg:0.7")[1] == 0.7
    assert parse_weighted("a.jpg")[1] == 1.0
    assert str(parse_weighted("C:/art/wave.jpg")[0]) == "C:/art/wave.jpg"
    with pytest.raises(StylecastError, match="positive"):
        parse_weighted("a.jpg:0")


def test_config_refuses_mismatched_scales_and_unknown_choices():
    with pytest.raises(StylecastError, match="2 step counts for 3 scales"):
        GatysConfig(scales=[64, 96, 128], steps=[5, 5]).check()
    with pytest.raises(StylecastError, match="--optimizer sgd"):
        GatysConfig(optimizer="sgd").check()
    with pytest.raises(StylecastError, match="--precision fp8"):
        GatysConfig(precision="fp8").check()
    with pytest.raises(StylecastError, match="2 style layer weights for 5 style layers"):
        GatysConfig(style_layer_weights=[1.0, 2.0]).check()
    with pytest.raises(StylecastError, match="--scales 256,big"):
        parse_list("256,big", "--scales")
    config = GatysConfig(scales=[64, 128], steps=[7])
    config.check()
    assert config.steps == [7, 7]


def test_optimize_cli_writes_image_sidecar_log_curve_and_snapshot(tmp_path, photos, style_image, tiny_vgg):
    out = tmp_path / "coffee.png"
    result = run_cli("optimize", str(photos / "coffee.jpg"), f"{style_image}:0.6", f"{photos / 'rocket.jpg'}:0.4",
                     "-o", str(out), "--loss-net", "vgg16", "--loss-net-weights", str(tiny_vgg),
                     "--snapshot", f"2:{tmp_path / 'snap' / 'coffee.png'}", *TINY)
    assert result.returncode == 0, result.stderr
    assert Image.open(out).size[0] == 32
    meta = json.loads((tmp_path / "coffee.png.json").read_text())
    assert meta["stylecast.format"] == "optimized-image" and meta["steps"] == 3
    assert meta["seconds"] > 0 and meta["cpu_seconds"] > 0 and meta["final_losses"]["total"] > 0
    assert meta["style"] == "style+rocket" and [s["weight"] for s in meta["styles"]] == [0.6, 0.4]
    assert "random" in meta["loss_net"] and meta["versions"]["torch"]
    assert meta["config"]["optimizer"] == meta["optimizer"]["kind"] == "lbfgs"
    snap = json.loads((tmp_path / "snap" / "coffee.png.json").read_text())
    assert snap["steps"] == 2 and snap["seconds"] <= meta["seconds"]
    with open(tmp_path / "coffee.log.csv") as handle:
        assert [row["step"] for row in csv.DictReader(handle)] == ["1", "2", "3"]
    assert (tmp_path / "coffee.loss.png").stat().st_size > 1000


def test_optimize_cli_refuses_bad_input_in_one_line(tmp_path, photos, style_image, tiny_vgg):
    common = ["--loss-net", "vgg16", "--loss-net-weights", str(tiny_vgg), *TINY]
    overwrite = run_cli("optimize", str(photos / "coffee.jpg"), str(style_image), "-o", str(style_image), *common)
    assert overwrite.returncode == 2 and "overwrite an input" in overwrite.stderr
    missing = run_cli("optimize", str(photos / "coffee.jpg"), str(tmp_path / "nope.jpg"), "-o", str(tmp_path / "o.png"),
                      *common)
    assert missing.returncode == 2 and "nope.jpg: no such file" in missing.stderr
    assert missing.stderr.strip().count("\n") == 0 and "Traceback" not in missing.stderr
    assert not (tmp_path / "o.png").exists()
