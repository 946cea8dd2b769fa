"""Tiled inference for images too large to stylize in one pass.

Tiles overlap and are blended with weights that ramp up across each shared edge and are
normalised by their sum, so a constant image stays constant and no seam is visible. Tiles are
processed one row of tiles at a time into a strip accumulator that is flushed to the uint8
output as soon as its rows are final: the working memory is one strip (``tile`` rows x image
width) plus one tile's inference, whatever the image height. The input and output images
themselves are of course whole in memory.

The transform net uses InstanceNorm. Normalised by its own statistics, each tile would be stylized a little
differently from its neighbours (a patchwork on smooth skies), so by default every tile is normalised by statistics
that stand for the whole image (after Chen et al. 2022's thumbnail instance normalisation; see
``Stylizer.tile_stats`` and ``stats_patches``). ``--tile-norm`` chooses them; ``make bench-tiles`` measures each
against whole-image inference.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from PIL import Image

from stylecast.runtime.errors import StylecastError
from stylecast.runtime.formats import STATS_BATCH_MAX, STATS_PATCH_MAX
from stylecast.runtime.images import resize_long_side

AUTO_TILE_LONG_SIDE = 2048  # above this long side, `stylecast stylize` tiles unless told --tile 0
DEFAULT_OVERLAP = 64
# The net downsamples twice by 2: a tile whose offset is not a multiple of 4 is painted in another phase of the
# strided convs than the same pixels of the whole image (14 grey levels apart, measured).
TILE_ALIGN = 4
# How tiles are normalised: by statistics pooled over full-resolution patches spread over the photo (the default),
# over a downscaled thumbnail (Chen et al. 2022), or each by its own (a patchwork; for comparison).
TILE_NORMS = ("mosaic", "thumbnail", "tile")
DEFAULT_TILE_NORM = TILE_NORMS[0]
# Tiles normalised each by itself stay 512 px. Under whole-image statistics a tile's size changes only memory and
# the share of pixels computed twice where tiles overlap, so those tiles are larger and evenly spread: on a 12 MP
# photo 1024 px ones ran in 0.95x the time of 512 px ones, at about 0.4 GiB of inference per fp32 tile (measured;
# the statistics pass takes more). `make bench-tiles` times the default.
TILE_SIDE = {"mosaic": 1024, "thumbnail": 1024, "tile": 512}
# A thumbnail's statistics come from a smaller scale than the photo's: its first layers' variances miss the photo's
# by 25-100%, enough to shift every tile's colours by 11-14 grey levels on 12 MP photos, though no longer tile by
# tile. Full-resolution patches keep the photo's scale: 12x12 patches of 160 px (a third of a 12 MP photo's pixels)
# came within 1.6-2.9 grey levels of whole-image inference on three 12 MP photos. 16x16 patches of 120 px were
# better on one photo and worse on another; larger patches, statistics that left out each patch's borders, and
# patches pooled in separate batches did worse (`make bench-tiles` measures the default).
MOSAIC_PATCH, MOSAIC_GRID, MOSAIC_SHARE = 160, (4, 12), 1 / 3
THUMBNAIL_SIDE, THUMBNAIL_PATCH = 1024, 128
assert MOSAIC_GRID[1] ** 2 <= STATS_BATCH_MAX and MOSAIC_PATCH <= STATS_PATCH_MAX  # what engines are built for


def thumbnail(rgb: np.ndarray, side: int = THUMBNAIL_SIDE) -> np.ndarray:
    """``rgb`` with its long side brought down to ``side`` (never up): a cheap integer box reduction first, so a
    48 MP photo costs one small copy, then an exact resize."""
    height, width = rgb.shape[:2]
    if max(height, width) <= side:
        return rgb
    factor = max(height, width) // side
    small = np.asarray(Image.fromarray(rgb).reduce(factor)) if factor >= 2 else rgb
    return resize_long_side(small, side)


def grid_patches(rgb: np.ndarray, patch: int, rows: int, cols: int) -> np.ndarray:
    """``rows`` x ``cols`` patches of ``patch`` px (less where the image is smaller), evenly spread over ``rgb``,
    as an NCHW float32 batch."""
    height, width = rgb.shape[:2]
    ph, pw = min(patch, height), min(patch, width)
    ys = np.linspace(0, height - ph, rows).round().astype(int)
    xs = np.linspace(0, width - pw, cols).round().astype(int)
    return np.stack([rgb[y:y + ph, x:x + pw] for y in ys for x in xs]).transpose(0, 3, 1, 2).astype(np.float32)


def stats_patches(rgb: np.ndarray, norm: str) -> np.ndarray:
    """The patches whose pooled InstanceNorm statistics stand for the whole of ``rgb`` under ``norm``: a grid of
    full-resolution patches (mosaic), or the thumbnail cut into patches that cover it (thumbnail)."""
    check_tile_norm(norm)
    if norm == "tile":
        raise StylecastError("--tile-norm tile normalises each tile by itself: there are no statistics patches")
    if norm == "mosaic":
        low, high = MOSAIC_GRID
        grid = int(np.clip(np.sqrt(rgb.shape[0] * rgb.shape[1] * MOSAIC_SHARE) // MOSAIC_PATCH, low, high))
        return grid_patches(rgb, MOSAIC_PATCH, grid, grid)
    small = thumbnail(rgb)
    rows, cols = (max(1, round(side / THUMBNAIL_PATCH)) for side in small.shape[:2])
    return grid_patches(small, max(small.shape[0] // rows, small.shape[1] // cols), rows, cols)


def default_tile(norm: str) -> int:
    """The tile side used under ``norm`` when none is given."""
    check_tile_norm(norm)
    return TILE_SIDE[norm]


def check_tile_norm(norm: str) -> None:
    if norm not in TILE_NORMS:
        raise StylecastError(f"--tile-norm {norm}: choose one of {', '.join(TILE_NORMS)}")


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of ``tile`` pixels covering ``length``; the last one ends flush."""
    if tile >= length:
        return [0]
    stride = tile - overlap
    starts = list(range(0, length - tile, stride))
    return [*starts, length - tile]


def even_tiles(length: int, tile: int, overlap: int) -> tuple[list[int], int]:
    """The fewest tiles of at most ``tile`` pixels (a few more where alignment needs them) that cover ``length``
    sharing at least ``overlap``, all of one size and evenly spread: (their starts, their size). Fixed-size tiles
    with a flush last one compute up to a tile's worth of pixels twice per row and column. Every start is a
    multiple of TILE_ALIGN, where the net's strided convs see a tile as they see the whole image."""
    if tile >= length:
        return [0], length
    shared = overlap + TILE_ALIGN  # starts rounded to the alignment may move a tile up to that much closer
    limit = tile - TILE_ALIGN + 1  # the alignment may lengthen a tile by up to TILE_ALIGN - 1
    count = math.ceil((length - shared) / (limit - shared))
    size = math.ceil((length + (count - 1) * shared) / count)
    size = length - (length - size) // TILE_ALIGN * TILE_ALIGN
    return [round(i * (length - size) / (count - 1) / TILE_ALIGN) * TILE_ALIGN for i in range(count)], size


def ramp(size: int, overlap: int, rise: bool, fall: bool) -> np.ndarray:
    """1-D blend weights: a raised-cosine rise/fall over ``overlap`` pixels on the shared edges.

    Values stay strictly positive so every pixel has weight, and weights of neighbouring tiles
    cross-fade smoothly across the overlap.
    """
    weights = np.ones(size, np.float32)
    width = min(overlap, size)
    if width > 0:
        edge = 0.5 - 0.5 * np.cos(np.pi * (np.arange(width, dtype=np.float32) + 0.5) / width)
        if rise:
            weights[:width] = np.minimum(weights[:width], edge)
        if fall:
            weights[size - width:] = np.minimum(weights[size - width:], edge[::-1])
    return weights


def check_tiling(tile: int, overlap: int) -> None:
    if tile < 32:
        raise StylecastError(f"--tile {tile} is too small; use at least 32 (e.g. --tile 512), or 0 to disable tiling")
    if not 0 <= overlap < tile // 2:
        raise StylecastError(f"--overlap {overlap} must be at least 0 and below half of --tile {tile}")


def stylize_tiled(run: Callable[[np.ndarray], np.ndarray], rgb: np.ndarray, tile: int, overlap: int,
                  progress: Callable[[int, int], None] | None = None, even: bool = False) -> np.ndarray:
    """Apply ``run`` (HxWx3 uint8 -> HxWx3 uint8) tile by tile and blend; returns HxWx3 uint8. ``even`` spreads
    the fewest equal tiles of at most ``tile`` px (see ``even_tiles``) instead of ``tile`` px ones with a flush
    last tile."""
    check_tiling(tile, overlap)
    height, width = rgb.shape[:2]
    if even:
        (ys, th), (xs, tw) = even_tiles(height, tile, overlap), even_tiles(width, tile, overlap)
    else:
        ys, xs = tile_starts(height, tile, overlap), tile_starts(width, tile, overlap)
        th, tw = min(tile, height), min(tile, width)
    out = np.empty_like(rgb)
    strip_top = 0
    strip = np.zeros((th, width, 3), np.float32)
    weight = np.zeros((th, width, 1), np.float32)
    done, total = 0, len(ys) * len(xs)
    for row, y in enumerate(ys):
        wy = ramp(th, overlap, rise=row > 0, fall=row < len(ys) - 1)
        for col, x in enumerate(xs):
            wx = ramp(tw, overlap, rise=col > 0, fall=col < len(xs) - 1)
            w = (wy[:, None] * wx[None, :])[..., None]
            result = run(rgb[y:y + th, x:x + tw])
            strip[y - strip_top:y - strip_top + th, x:x + tw] += result.astype(np.float32) * w
            weight[y - strip_top:y - strip_top + th, x:x + tw] += w
            done += 1
            if progress:
                progress(done, total)
        final_to = ys[row + 1] if row + 1 < len(ys) else y + th
        rows = final_to - strip_top
        out[strip_top:final_to] = np.clip(np.rint(strip[:rows] / weight[:rows]), 0, 255).astype(np.uint8)
        # Slide the strip down: rows not yet final move to the top, the rest starts empty.
        keep = th - rows
        strip[:keep], weight[:keep] = strip[rows:], weight[rows:]
        strip[keep:], weight[keep:] = 0.0, 0.0
        strip_top = final_to
    return out
