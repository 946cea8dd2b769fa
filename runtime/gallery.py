"""Side-by-side contact sheets: the style, then each photo next to its stylized version."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from stylecast.runtime.images import atomic_write


def _fit_height(rgb: np.ndarray, height: int) -> Image.Image:
    img = Image.fromarray(rgb)
    return img.resize((max(1, round(img.width * height / img.height)), height), Image.Resampling.LANCZOS)


def make_gallery(rows: list[tuple[np.ndarray, ...]], dest: Path, title: str = "",
                 style: np.ndarray | None = None, height: int = 256, pad: int = 8,
                 labels: list[str] | None = None, jpeg_quality: int = 88) -> None:
    """Write a PNG (or a JPEG at ``jpeg_quality``, by the name) with one row per (photo, stylized, ...) tuple, the
    style image on top, and optional column labels (e.g. the methods an evaluation compares)."""
    tiles = [[_fit_height(image, height) for image in row] for row in rows]
    # Columns as wide as their widest tile, so every row lines up under the labels.
    columns = [max(row[c].width for row in tiles if c < len(row)) for c in range(max(map(len, tiles)))]
    starts = [pad + sum(columns[:c]) + pad * c for c in range(len(columns))]
    width = starts[-1] + columns[-1] + pad
    header = _fit_height(style, height) if style is not None else None
    label_height = 16 if labels else 0
    top = (header.height + pad if header else 0) + (24 if title else 0) + label_height + pad
    sheet = Image.new("RGB", (width, top + len(tiles) * (height + pad)), "white")
    draw = ImageDraw.Draw(sheet)
    if title:
        draw.text((pad, pad), title, fill="black")
    if header:
        sheet.paste(header, ((width - header.width) // 2, top - label_height - header.height - pad))
    for label, x in zip(labels or [], starts, strict=False):
        draw.text((x, top - label_height), label, fill="black")
    y = top
    for row in tiles:
        for tile, x in zip(row, starts, strict=False):
            sheet.paste(tile, (x, y))
        y += height + pad
    # JPEG where the name asks for it: a 10-row contact sheet of photos is 4.5 MB as PNG, ~10x less as JPEG.
    jpeg = Path(dest).suffix.lower() in (".jpg", ".jpeg")
    options = {"format": "JPEG", "quality": jpeg_quality} if jpeg else {"format": "PNG"}
    atomic_write(dest, lambda tmp: sheet.save(tmp, **options))
