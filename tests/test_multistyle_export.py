"""A multi-style net through export and the runtime: one ONNX per precision with image and style inputs, parity in
every style, tiled graphs that take the style, the Stylizer's and `stylize --style`'s choices, on a tiny N=3 net
(width 4, one residual block) saved without training."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from PIL import Image

from stylecast.export.pipeline import ExportRequest, run_export
from stylecast.export.precisions import Int8Settings
from stylecast.export.trt_conformance import RELEASES, check_releases
from stylecast.runtime.artifacts import onnx_metadata
from stylecast.runtime.backends import load_backend
from stylecast.runtime.backends.onnxruntime import provider_options
from stylecast.runtime.errors import StylecastError
from stylecast.runtime.formats import INPUT, PRECISIONS, STYLE, companion_path
from stylecast.runtime.media import run_image
from stylecast.runtime.metrics import psnr
from stylecast.runtime.stylizer import Stylizer
from stylecast.runtime.tiling import stylize_tiled
from stylecast.train.checkpoint import load_model

from .conftest import MULTI_STYLES, TINY_SIZES, export_tiny_net, run_cli, save_tiny_net

pytestmark = pytest.mark.slow  # every test here stands on a real export of the net

NAMES = MULTI_STYLES
SIZES = TINY_SIZES
FLOOR = PRECISIONS["fp32"].psnr_floor_db


@pytest.fixture(scope="module")
def trio(tmp_path_factory, photos, calibration_photos) -> tuple[Path, dict, Path]:
    """(the export folder, its report, the checkpoint) of a 3-style net in fp32, fp16 and int8; a random net may
    miss the int8 floor, which is reported, not fatal."""
    root = tmp_path_factory.mktemp("trio")
    checkpoint = save_tiny_net(root / "models", "trio", 3)
    int8 = Int8Settings(calibration_images=calibration_photos, count=5, size=(64, 64), method="minmax",
                        fp32_leading=1)
    report = run_export(ExportRequest(checkpoint, root / "out", precisions=["fp32", "fp16", "int8"],
                                      parity_images=photos, sizes=SIZES, int8=int8,
                                      allow_below_floor=frozenset({"int8"})), log=lambda _: None)
    return root / "out", report, checkpoint


@pytest.fixture(scope="module")
def single(tmp_path_factory, photos) -> Path:
    """A single-style net's fp32 export."""
    return export_tiny_net(tmp_path_factory.mktemp("single"), "solo", 1, photos)


def _rgb(photos: Path, width: int, height: int) -> np.ndarray:
    return np.asarray(Image.open(photos / "chelsea.jpg").convert("RGB").resize((width, height)))


def _torch(checkpoint: Path, rgb: np.ndarray, weights: list[float]) -> np.ndarray:
    """The PyTorch net's float output for one HxWx3 image in the style ``weights``."""
    batch = torch.from_numpy(rgb.transpose(2, 0, 1)[None].astype(np.float32))
    with torch.no_grad():
        return load_model(checkpoint).model(batch, torch.tensor([weights])).numpy()


def test_every_precision_takes_image_and_style_and_names_its_styles(trio):
    out, report, _ = trio
    assert report["styles"] == NAMES
    for entry in report["exports"]:
        model = onnx.load(str(out / entry["file"]))
        inputs = {i.name: i.type.tensor_type for i in model.graph.input}
        assert list(inputs) == [INPUT, STYLE]
        assert [d.dim_param or d.dim_value for d in inputs[STYLE].shape.dim] == ["batch", 3]
        assert inputs[STYLE].elem_type == onnx.TensorProto.FLOAT  # fp32 at the boundary, whatever the precision
        assert json.loads(onnx_metadata(out / entry["file"])["styles"]) == NAMES
        # Parity is measured and reported in every style; the worst one decides.
        assert set(entry["styles"]) == set(NAMES) and {p["style"] for p in entry["parity"]} == set(NAMES)
        assert entry["passed"] == all(s["passed"] for s in entry["styles"].values())
        assert entry["tiled"]["passed"], entry["tiled"]
        assert all(lines == "conforms" for lines in entry["tensorrt_parser"].values()), entry["tensorrt_parser"]
    fp16 = onnx.load(str(out / "trio.fp16.onnx"))
    inferred = onnx.shape_inference.infer_shapes(fp16)
    types = {v.name: v.type.tensor_type.elem_type for v in (*inferred.graph.value_info, *inferred.graph.input)}
    norms = [n for n in fp16.graph.node if n.op_type == "InstanceNormalization"]
    assert norms and all(types[n.input[0]] == onnx.TensorProto.FLOAT for n in norms)
    int8 = onnx.load(str(out / "trio.int8.onnx"))
    dequantized = {o for n in int8.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    assert not any(set(n.input) & dequantized for n in int8.graph.node if n.op_type == "MatMul")  # style path fp32
    by_precision = {e["precision"]: e for e in report["exports"]}
    assert by_precision["fp32"]["passed"] and by_precision["fp16"]["passed"], by_precision["fp16"]["styles"]


def test_onnx_runtime_paints_each_style_and_a_blend_as_pytorch_does(trio, photos):
    out, _, checkpoint = trio
    rgb = _rgb(photos, 79, 61)
    batch = rgb.transpose(2, 0, 1)[None].astype(np.float32)
    backend = load_backend(out / "trio.fp32.onnx")
    painted = []
    for row in np.eye(3, dtype=np.float32):
        got = backend.run(batch, style=row[None])
        assert psnr(_torch(checkpoint, rgb, row.tolist()), got) >= FLOOR
        painted.append(got)
    assert min(np.abs(a - b).mean() for i, a in enumerate(painted) for b in painted[i + 1:]) > 1  # styles differ
    stylizer = Stylizer(out / "trio.fp32.onnx", style="wave=0.5,starry_night=0.5")
    assert stylizer.styles == NAMES and np.allclose(stylizer.style_vector, [0.5, 0.5, 0])
    assert psnr(_torch(checkpoint, rgb, [0.5, 0.5, 0.0]), stylizer.forward(batch)) >= FLOOR
    assert stylizer.style == "wave50-starry_night50"
    assert Stylizer(out / "trio.fp32.onnx").style == "wave"  # no choice: the first style
    with pytest.raises(StylecastError, match="takes image, style; given image"):
        backend.run(batch)


def test_a_batch_mixes_styles_one_per_image(trio, photos):
    out, _, _ = trio
    rgb = _rgb(photos, 48, 40)
    stylizer = Stylizer(out / "trio.fp32.onnx")
    choices = ["candy", "starry_night", "wave=1,candy=3"]
    mixed = stylizer.stylize_batch([rgb] * 3, styles=[stylizer.weights(c) for c in choices])
    for choice, got in zip(choices, mixed, strict=True):
        assert np.array_equal(got, Stylizer(out / "trio.fp32.onnx", style=choice)(rgb)), choice
    with pytest.raises(StylecastError, match=r"unknown style\(s\) \['monet'\]; this model has wave, starry_night, "
                                             "candy"):
        stylizer.weights("monet")


def test_stylize_command_takes_a_style_or_a_blend(trio, photos, tmp_path):
    out, _, _ = trio
    source = tmp_path / "photo.png"
    Image.fromarray(_rgb(photos, 72, 56)).save(source)
    for choice in ("starry_night", "wave=0.5,candy=0.5"):
        dest = tmp_path / f"{choice}.png"
        done = run_cli("stylize", str(source), "--model", str(out / "trio.fp32.onnx"), "--style", choice,
                       "--out", str(dest))
        assert done.returncode == 0, done.stderr
        expected = Stylizer(out / "trio.fp32.onnx", style=choice)(np.asarray(Image.open(source).convert("RGB")))
        assert np.array_equal(np.asarray(Image.open(dest)), expected), choice
    named = run_cli("stylize", str(source), "--model", str(out / "trio.fp32.onnx"), "--style", "candy",
                    "--out", str(tmp_path / "folder"))
    assert named.returncode == 0 and (tmp_path / "folder" / "photo.candy.png").is_file(), named.stderr
    bad = run_cli("stylize", str(source), "--model", str(out / "trio.fp32.onnx"), "--style", "monet",
                  "--out", str(tmp_path / "bad.png"))
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines() == ["error: unknown style(s) ['monet']; this model has wave, starry_night, "
                                               "candy"]


def test_tiles_take_the_style_in_both_tiled_graphs(trio, photos):
    """With the whole image's statistics in its style, evenly spread tiles reproduce it; the statistics of another
    style do not (they depend on the style through the earlier layers' affine)."""
    out, _, _ = trio
    model = out / "trio.fp32.onnx"
    stats_graph = onnx.load(str(companion_path(model, "stats")))
    assert [d.dim_value for d in stats_graph.graph.input[1].type.tensor_type.shape.dim] == [1, 3]
    assert [i.name for i in onnx.load(str(companion_path(model, "apply"))).graph.input] == [INPUT, STYLE, "in_stats"]
    rgb = _rgb(photos, 301, 203)
    stylizer = Stylizer(model, style="starry_night")
    whole = stylizer(rgb)
    photo = rgb.transpose(2, 0, 1)[None].astype(np.float32)
    with load_backend(companion_path(model, "stats")) as stats:
        own, other = (stats.run(photo, style=stylizer.weights(c)[None]) for c in ("starry_night", "candy"))

    def tiled(found: np.ndarray) -> np.ndarray:
        # This net's head paints 100x a fresh one's contrast, so tile edges need a wide overlap to blend away.
        return stylize_tiled(lambda part: stylizer.stylize_batch([part], None, [found])[0], rgb, 208, 96, even=True)

    assert np.abs(tiled(own).astype(int) - whole.astype(int)).mean() < 0.05
    assert np.abs(tiled(other).astype(int) - whole.astype(int)).mean() > 10
    # A forced mosaic run with a per-call style (a server's request) is the run of a stylizer made for that style.
    candy = run_image(Stylizer(model), rgb, 96, 32, norm="mosaic", style=stylizer.weights("candy"))
    assert np.array_equal(candy, run_image(Stylizer(model, style="candy"), rgb, 96, 32, norm="mosaic"))
    assert not np.array_equal(candy, run_image(stylizer, rgb, 96, 32, norm="mosaic"))


def test_openvino_runs_the_style_input(trio, photos):
    pytest.importorskip("openvino")
    out, _, _ = trio
    rgb = _rgb(photos, 52, 40)
    batch = rgb.transpose(2, 0, 1)[None].astype(np.float32)
    for precision in ("fp32", "int8"):
        model = out / f"trio.{precision}.onnx"
        ov, ort = (Stylizer(model, backend=name, threads=1, style="candy=0.3,wave=0.7")
                   for name in ("openvino", "onnxruntime"))
        # OpenVINO runs int8 convs fused where ONNX Runtime dequantizes: rounding apart, within the int8 floor.
        floor = PRECISIONS[precision].psnr_floor_db
        assert psnr(ort.forward(batch), ov.forward(batch)) >= floor, precision
        assert np.allclose(ov.tile_stats(rgb)[0], ort.tile_stats(rgb)[0], rtol=1e-2, atol=1e-2), precision


def test_chains_apply_the_style_to_their_multi_style_models(trio, single, photos):
    out, _, _ = trio
    batch = _rgb(photos, 40, 36).transpose(2, 0, 1)[None].astype(np.float32)
    chain = Stylizer([single, out / "trio.fp32.onnx"], style="candy")
    assert chain.styles == NAMES and chain.style == "solo+candy"
    expected = Stylizer(out / "trio.fp32.onnx", style="candy").forward(Stylizer(single).forward(batch))
    assert np.array_equal(chain.forward(batch), expected)


def test_a_single_style_export_is_unchanged_and_refuses_other_styles(single, photos, tmp_path):
    model = onnx.load(str(single))
    assert [i.name for i in model.graph.input] == [INPUT]
    assert "styles" not in onnx_metadata(single)
    assert [i.name for i in onnx.load(str(companion_path(single, "stats"))).graph.input] == [INPUT]
    stylizer = Stylizer(single)
    assert stylizer.styles == ["solo"] and stylizer.style == "solo"
    rgb = _rgb(photos, 40, 32)
    assert np.array_equal(Stylizer(single, style="solo")(rgb), stylizer(rgb))
    with pytest.raises(StylecastError, match=r"unknown style\(s\) \['other'\]; this model has solo"):
        Stylizer(single, style="other")
    source = tmp_path / "photo.png"
    Image.fromarray(rgb).save(source)
    bad = run_cli("stylize", str(source), "--model", str(single), "--style", "other", "--out", str(tmp_path / "o.png"))
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines() == ["error: unknown style(s) ['other']; this model has solo"]


def test_check_trt_and_the_tensorrt_profiles_cover_the_style_input(trio):
    out, _, _ = trio
    for precision in ("fp32", "fp16", "int8"):
        model = out / f"trio.{precision}.onnx"
        for graph in (model, companion_path(model, "stats"), companion_path(model, "apply")):
            assert check_releases(graph) == {name: [] for name in RELEASES}, graph
    done = run_cli("check-trt", str(out / "trio.int8.onnx"), "--trt", "10.3")
    assert done.returncode == 0 and "conforms" in done.stdout, done.stdout + done.stderr
    options = provider_options("TensorrtExecutionProvider", out / "cache", styles=3)
    assert options["trt_profile_min_shapes"] == "image:1x3x16x16,style:1x3"
    assert options["trt_profile_max_shapes"] == "image:4x3x1920x1920,style:4x3"
