"""Tiled inference for images too large to stylize in one pass.

Tiles overlap and are blended with weights that ramp up across each shared edge and are
normalised by their sum, so a constant image stays constant and no seam is visible. Tiles are
processed one row of tiles at a time into a strip accumulator that is flushed to the uint8
output as soon as its rows are final: the working memory is one strip (``tile`` rows x image
width) plus one tile's inference, whatever the image height. The input and output images
themselves are of course whole in memory.

The transform net uses InstanceNorm, so a tile is normalised with its own statistics, not the
whole image's: tiled and whole-image results differ somewhat (measured in ``benchmarks/tiles.py``).
Larger tiles and overlaps bring them closer.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from stylecast.runtime.errors import StylecastError

AUTO_TILE_LONG_SIDE = 2048  # above this long side, `stylecast stylize` tiles unless told --tile 0
DEFAULT_TILE = 512
DEFAULT_OVERLAP = 64


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of ``tile`` pixels covering ``length``; the last one ends flush."""
    if tile >= length:
        return [0]
    stride = tile - overlap
    starts = list(range(0, length - tile, stride))
    return [*starts, length - tile]


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
                  progress: Callable[[int, int], None] | None = None) -> np.ndarray:
    """Apply ``run`` (HxWx3 uint8 -> HxWx3 uint8) tile by tile and blend; returns HxWx3 uint8."""
    check_tiling(tile, overlap)
    height, width = rgb.shape[:2]
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
