"""Side-by-side contact sheets: the style, then each photo next to its stylized version."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .images import atomic_write


def _fit_height(rgb: np.ndarray, height: int) -> Image.Image:
    img = Image.fromarray(rgb)
    return img.resize((max(1, round(img.width * height / img.height)), height), Image.Resampling.LANCZOS)


def make_gallery(rows: list[tuple[np.ndarray, ...]], dest: Path, title: str = "",
                 style: np.ndarray | None = None, height: int = 256, pad: int = 8,
                 labels: list[str] | None = None) -> None:
    """Write a PNG with one row per (photo, stylized, ...) tuple, the style image on top, and
    optional column labels (e.g. the methods an evaluation compares)."""
    tiles = [[_fit_height(image, height) for image in row] for row in rows]
    width = max(sum(t.width for t in row) + pad * (len(row) + 1) for row in tiles)
    header = _fit_height(style, height) if style is not None else None
    label_height = 16 if labels else 0
    top = (header.height + pad if header else 0) + (24 if title else 0) + label_height + pad
    sheet = Image.new("RGB", (width, top + len(tiles) * (height + pad)), "white")
    draw = ImageDraw.Draw(sheet)
    if title:
        draw.text((pad, pad), title, fill="black")
    if header:
        sheet.paste(header, ((width - header.width) // 2, top - label_height - header.height - pad))
    if labels:
        x = pad
        for label, tile in zip(labels, tiles[0], strict=False):
            draw.text((x, top - label_height), label, fill="black")
            x += tile.width + pad
    y = top
    for row in tiles:
        x = pad
        for tile in row:
            sheet.paste(tile, (x, y))
            x += tile.width + pad
        y += height + pad
    atomic_write(dest, lambda tmp: sheet.save(tmp, format="PNG"))
