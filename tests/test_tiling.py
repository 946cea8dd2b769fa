"""Tiled inference: full coverage, seamless blending, bounded working memory, agreement with whole images."""

import tracemalloc

import numpy as np
import pytest
from PIL import Image

from stylecast.runtime.errors import StylecastError
from stylecast.runtime.metrics import psnr, ssim
from stylecast.runtime.stylizer import Stylizer
from stylecast.runtime.tiling import TILE_ALIGN, check_tiling, even_tiles, ramp, stylize_tiled, tile_starts


@pytest.mark.parametrize("length,tile,overlap", [(100, 32, 8), (32, 32, 8), (20, 32, 8), (1000, 512, 64), (97, 40, 12)])
def test_tiles_cover_everything_and_end_flush(length, tile, overlap):
    starts = tile_starts(length, tile, overlap)
    size = min(tile, length)
    covered = np.zeros(length, bool)
    for s in starts:
        covered[s:s + size] = True
    assert covered.all() and starts[0] == 0 and starts[-1] + size == length
    assert all(b - a <= tile - overlap for a, b in zip(starts, starts[1:], strict=False))


@pytest.mark.parametrize("length,tile,overlap", [(3024, 1024, 64), (4032, 1024, 64), (4032, 512, 64), (1001, 160, 32),
                                                 (2049, 512, 64), (500, 512, 64), (97, 40, 12)])
def test_even_tiles_are_few_equal_aligned_and_overlap_enough(length, tile, overlap):
    starts, size = even_tiles(length, tile, overlap)
    assert size <= tile and starts[0] == 0 and starts[-1] + size == length
    assert all(s % TILE_ALIGN == 0 for s in starts)
    assert all(a + size - b >= overlap for a, b in zip(starts, starts[1:], strict=False))
    assert len(starts) <= len(tile_starts(length, tile, overlap))
    assert len(set(starts)) == len(starts)


def test_ramp_is_positive_and_cross_fades():
    w = ramp(32, 8, rise=True, fall=True)
    assert (w > 0).all() and w[8:24].min() == 1.0
    np.testing.assert_allclose(w[:8] + w[:8][::-1], 1.0, atol=1e-6)  # raised cosine: halves sum to one


def test_identity_tiled_is_exact():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (203, 317, 3), dtype=np.uint8)
    calls = []
    out = stylize_tiled(lambda t: t, rgb, 64, 16, progress=lambda n, total: calls.append((n, total)))
    assert np.array_equal(out, rgb)
    assert calls[-1][0] == calls[-1][1] == len(tile_starts(203, 64, 16)) * len(tile_starts(317, 64, 16))


def test_constant_tiles_blend_to_constant():
    rgb = np.full((150, 230, 3), 77, np.uint8)
    out = stylize_tiled(lambda t: np.full_like(t, 200), rgb, 48, 12)
    assert (out == 200).all()


def test_blend_has_no_seams():
    """Tiles that disagree (each output brightened by its own offset) still blend smoothly: the largest
    step between neighbouring pixels stays far below the disagreement between tiles."""
    rgb = np.full((128, 256, 3), 100, np.uint8)
    offsets = iter(range(0, 400, 20))

    def shifted(tile):
        return np.clip(tile.astype(int) + next(offsets) % 60, 0, 255).astype(np.uint8)

    out = stylize_tiled(shifted, rgb, 64, 24).astype(int)
    steps = max(np.abs(np.diff(out, axis=0)).max(), np.abs(np.diff(out, axis=1)).max())
    assert steps <= 6  # a hard seam would be a step of up to 40


def _extra_memory(height: int) -> int:
    """Peak bytes allocated by tiled inference beyond its output image."""
    rgb = np.zeros((height, 64, 3), np.uint8)
    tracemalloc.start()
    out = stylize_tiled(lambda t: t, rgb, 64, 16)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak - out.nbytes


def test_working_memory_does_not_grow_with_image_height():
    small, tall = _extra_memory(512), _extra_memory(8192)
    assert tall < 1.2 * small  # one strip and one tile, whatever the height
    assert tall < 8192 * 64 * 3  # far below even one uint8 copy of the image (a float accumulator is 5x that)


def test_bad_tiling_options_are_user_errors():
    with pytest.raises(StylecastError, match="--tile"):
        check_tiling(8, 0)
    with pytest.raises(StylecastError, match="--overlap"):
        check_tiling(64, 40)


def test_tiny_model_tiled_agrees_with_whole(tiny_onnx, photos):
    stylizer = Stylizer(tiny_onnx)
    rgb = np.asarray(Image.open(photos / "chelsea.jpg").convert("RGB").resize((320, 240)))
    whole = stylizer(rgb)
    tiled = stylize_tiled(stylizer, rgb, 160, 48)
    assert tiled.shape == whole.shape
    # InstanceNorm normalises each tile by its own statistics, so agreement is close, not exact.
    assert psnr(whole, tiled) > 25 and ssim(whole, tiled) > 0.9
    constant = np.full((200, 300, 3), 90, np.uint8)
    flat = stylize_tiled(stylizer, constant, 96, 24)
    assert (flat == flat[0, 0]).all()
