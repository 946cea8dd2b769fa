"""Tiles normalised by the whole image: the statistics and apply graphs beside each export, and tiled inference
that agrees with whole-image inference where per-tile normalisation makes a patchwork."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
from PIL import Image

from stylecast.export import norm_graphs, to_onnx
from stylecast.runtime.backends import load_backend
from stylecast.runtime.errors import StylecastError
from stylecast.runtime.formats import companion_path
from stylecast.runtime.media import run_image
from stylecast.runtime.stylizer import Stylizer
from stylecast.runtime.tiling import TILE_NORMS, check_tile_norm, stats_patches, stylize_tiled, thumbnail

from .conftest import run_cli

ROOT = Path(__file__).resolve().parent.parent


def _block_shifts(a: np.ndarray, b: np.ndarray, block: int) -> np.ndarray:
    """Mean luminance of ``a`` minus that of ``b`` over each whole ``block`` px square."""
    ya, yb = a.astype(np.float64).mean(axis=2), b.astype(np.float64).mean(axis=2)
    height, width = ya.shape
    return np.array([ya[y:y + block, x:x + block].mean() - yb[y:y + block, x:x + block].mean()
                     for y in range(0, height - block + 1, block) for x in range(0, width - block + 1, block)])


def _tiled(stylizer: Stylizer, rgb: np.ndarray, norm: str, tile: int | None = None, overlap: int = 64) -> np.ndarray:
    """What `stylecast stylize` does with ``norm`` (its default tiles unless ``tile`` is given)."""
    return run_image(stylizer, rgb, tile, overlap, norm=norm)


@pytest.fixture(scope="module")
def wave_onnx(tmp_path_factory, photos) -> Path:
    """The shipped wave model, exported as `make export` exports it: the single pass and its tiled graphs."""
    from stylecast.export.pipeline import ExportRequest, run_export

    out = tmp_path_factory.mktemp("wave")
    run_export(ExportRequest(ROOT / "models" / "wave.safetensors", out, parity_images=photos), log=lambda _: None)
    return out / "wave.fp32.onnx"


@pytest.fixture(scope="module")
def big_photo() -> np.ndarray:
    """A 3000x2000 photo: a shipped sample photo (600x400) upscaled, so smooth areas are wide, as in a phone
    photo's sky."""
    photo = Image.open(ROOT / "benchmarks" / "photos" / "coffee.jpg").convert("RGB")
    return np.asarray(photo.resize((3000, 2000), Image.Resampling.BICUBIC))


def test_statistics_patches_sample_the_photo_at_full_resolution_or_cover_its_thumbnail():
    rgb = np.random.default_rng(0).integers(0, 256, (3000, 4000, 3), np.uint8)
    assert thumbnail(rgb).shape == (768, 1024, 3)
    assert thumbnail(rgb[:500, :600]).shape == (500, 600, 3)  # never up
    patches = stats_patches(rgb, "mosaic")
    assert patches.shape == (144, 3, 160, 160) and patches.dtype == np.float32  # 12x12, the cap: 30% of 12 MP
    assert np.array_equal(patches[0].transpose(1, 2, 0), rgb[:160, :160])  # full-resolution corners
    assert np.array_equal(patches[-1].transpose(1, 2, 0), rgb[-160:, -160:])
    assert stats_patches(rgb[:1500, :2000], "mosaic").shape == (36, 3, 160, 160)  # a third of 3 MP: 6x6
    assert stats_patches(rgb, "thumbnail").shape == (48, 3, 128, 128)  # 1024x768 in 6x8 patches
    with pytest.raises(StylecastError, match="--tile-norm bogus: choose one of mosaic, thumbnail, tile"):
        check_tile_norm("bogus")
    with pytest.raises(StylecastError, match="no statistics patches"):
        stats_patches(rgb, "tile")


def test_the_two_graphs_compute_the_single_pass_on_a_whole_image(tiny_onnx, photos):
    stylizer = Stylizer(tiny_onnx)
    apply, = stylizer.apply_graphs()
    stats = load_backend(companion_path(tiny_onnx, "stats"))
    assert stats.metadata["stylecast.graph"] == "stats" and apply.metadata["stylecast.graph"] == "apply"
    rgb = np.asarray(Image.open(photos / "chelsea.jpg").convert("RGB").resize((200, 150)))
    batch = rgb.transpose(2, 0, 1)[None].astype(np.float32)
    own = stats.run(batch)
    assert own.shape == (1, 2 * sum(json.loads(stats.metadata["stylecast.stats_layout"])))
    assert np.abs(apply.run(batch, own) - stylizer.forward(batch)).max() < 1e-2


def test_tiles_with_the_whole_images_statistics_reproduce_it(tiny_onnx, photos):
    """Tiling itself adds no error: with the exact statistics, evenly spread tiles give the whole-image output
    but for rounding, whatever the image's size, because every tile starts where the strided convs do."""
    stylizer = Stylizer(tiny_onnx)
    rgb = np.asarray(Image.open(photos / "chelsea.jpg").convert("RGB").resize((701, 503)))
    whole = stylizer(rgb)
    stats = load_backend(companion_path(tiny_onnx, "stats")).run(rgb.transpose(2, 0, 1)[None].astype(np.float32))
    outputs = {even: stylize_tiled(lambda part: stylizer.stylize_batch([part], None, [stats])[0], rgb, 160, 32,
                                   even=even) for even in (True, False)}
    errors = {even: np.abs(out.astype(int) - whole.astype(int)).mean() for even, out in outputs.items()}
    assert errors[True] < 0.01 and errors[False] > 10 * errors[True], errors  # a flush last tile is misaligned here


def test_tiled_3000x2000_matches_the_whole_image_where_tiles_alone_do_not(wave_onnx, big_photo):
    """The targets a phone photo is held to (mean difference 3 grey levels, 448 px block shifts 1.5)."""
    stylizer = Stylizer(wave_onnx)
    whole = stylizer(big_photo)
    mosaic_tiles, own_tiles = _tiled(stylizer, big_photo, "mosaic"), _tiled(stylizer, big_photo, "tile")
    mad = np.abs(mosaic_tiles.astype(int) - whole.astype(int)).mean()
    shifts = _block_shifts(mosaic_tiles, whole, 448)
    assert mad <= 3.0 and shifts.std() <= 1.5, (mad, shifts.std())
    # The per-tile normalisation this replaces is measurably further off on the same photo; a thumbnail's
    # statistics remove most of its block shifts.
    own = _block_shifts(own_tiles, whole, 448).std()
    assert own > 5 * shifts.std()
    assert _block_shifts(_tiled(stylizer, big_photo, "thumbnail"), whole, 448).std() < own / 3


def test_a_constant_image_stays_constant(wave_onnx):
    stylizer = Stylizer(wave_onnx)
    constant = np.full((1200, 900, 3), 90, np.uint8)
    for norm in TILE_NORMS:
        # A flat photo leaves every InstanceNorm with no variance, where its gain 1/sqrt(eps) magnifies rounding
        # noise layer by layer: the output must still be finite (NaN would cast to a flat 0 with a warning).
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            flat = _tiled(stylizer, constant, norm, tile=256, overlap=32)
        assert (flat == flat[0, 0]).all(), norm


def test_stylize_tiles_by_default_and_tile_norm_is_a_choice(tiny_onnx, big_photo, tmp_path):
    source = tmp_path / "big.png"
    Image.fromarray(big_photo[:1200, :2400]).save(source)  # 2400 px: over the auto-tiling long side
    for norm in ("default", "tile"):
        extra = [] if norm == "default" else ["--tile-norm", norm]
        done = run_cli("stylize", str(source), "--model", str(tiny_onnx), "--out", str(tmp_path / f"{norm}.png"), *extra)
        assert done.returncode == 0, done.stderr
    stylizer = Stylizer(tiny_onnx)
    expected = _tiled(stylizer, big_photo[:1200, :2400], "mosaic")
    assert np.array_equal(np.asarray(Image.open(tmp_path / "default.png")), expected)
    assert not np.array_equal(np.asarray(Image.open(tmp_path / "tile.png")), expected)
    bad = run_cli("stylize", str(source), "--model", str(tiny_onnx), "--out", str(tmp_path), "--tile-norm", "x")
    assert bad.returncode != 0 and "--tile-norm x: choose one of mosaic, thumbnail, tile" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_missing_or_stale_tiled_graphs_are_refused_with_the_fix(tiny_onnx, tmp_path, big_photo):
    model = tmp_path / "tiny.fp32.onnx"
    shutil.copy(tiny_onnx, model)
    with pytest.raises(StylecastError, match="tiled graphs are missing.*re-export.*--tile-norm tile"):
        Stylizer(model).tile_stats(big_photo)
    companion_path(model, "stats").parent.mkdir()
    for role in ("stats", "apply"):
        shutil.copy(companion_path(tiny_onnx, role), companion_path(model, role))
    Stylizer(model).tile_stats(big_photo)  # copies of the same files: accepted
    shutil.copy(companion_path(tiny_onnx, "stats"), companion_path(model, "apply"))  # the wrong role
    with pytest.raises(StylecastError, match="not the apply graph of .*re-export"):
        Stylizer(model).tile_stats(big_photo)
    shutil.copy(companion_path(tiny_onnx, "apply"), companion_path(model, "apply"))
    changed = onnx.load(str(model))
    changed.metadata_props.add(key="note", value="re-exported since")  # another file than the graphs came from
    onnx.save(changed, str(model))
    with pytest.raises(StylecastError, match="stale or foreign"):
        Stylizer(model).tile_stats(big_photo)


def test_the_tiles_benchmark_finds_the_sky_and_measures_block_shifts():
    from stylecast.benchmarks.media.tiles import block_shifts, smoothest_crop

    rgb = np.random.default_rng(0).integers(0, 256, (900, 1200, 3), np.uint8)
    rgb[300:700, 600:1000] = 128  # the only smooth square
    assert smoothest_crop(rgb, 256) == (384, 640)
    brighter = np.clip(rgb.astype(int) + 3, 0, 255).astype(np.uint8)
    shifts = block_shifts(brighter, rgb, 448)
    assert len(shifts) == 4 and np.all((shifts > 2.5) & (shifts <= 3.0))


def test_exports_remake_graphs_an_older_surgery_left_and_keep_current_ones(tiny_onnx, tmp_path):
    model = tmp_path / "tiny.fp32.onnx"
    shutil.copy(tiny_onnx, model)
    files = norm_graphs.write_companions(model, to_onnx.save_onnx)
    older = onnx.load(str(files["apply"]))
    for prop in older.metadata_props:
        if prop.key == norm_graphs.GRAPH_VERSION_KEY:
            prop.value = "1"
    onnx.save(older, str(files["apply"]))
    kept = files["stats"].stat().st_mtime_ns
    norm_graphs.write_companions(model, to_onnx.save_onnx)
    remade = load_backend(files["apply"]).metadata
    assert remade[norm_graphs.GRAPH_VERSION_KEY] == norm_graphs.GRAPH_VERSION
    assert files["stats"].stat().st_mtime_ns == kept
    # The apply graph divides only per-channel vectors, never a whole feature map.
    ops = [node.op_type for node in onnx.load(str(files["apply"])).graph.node]
    single_divs = [node.op_type for node in onnx.load(str(model)).graph.node].count("Div")
    assert "InstanceNormalization" not in ops and ops.count("Div") == single_divs + ops.count("Sqrt")
