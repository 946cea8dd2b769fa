"""One input through the model, the way every `stylecast stylize` run does it: one file at a time on this machine,
or on the actors of a Ray job (``runtime/ray_data.py``). Both call these, so an output does not depend on where it
was computed."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePath, PurePosixPath

import numpy as np

from stylecast.runtime.artifacts import sha256_file
from stylecast.runtime.errors import StylecastError
from stylecast.runtime.images import IMAGE_SUFFIXES, LoadedImage, resize_max_side
from stylecast.runtime.params import option
from stylecast.runtime.stroke import check_stroke, paint_at_stroke
from stylecast.runtime.stylizer import Stylizer
from stylecast.runtime.temporal import check_blend, check_hold
from stylecast.runtime.tiling import (
    AUTO_TILE_LONG_SIDE,
    DEFAULT_OVERLAP,
    DEFAULT_TILE_NORM,
    check_tile_norm,
    check_tiling,
    default_tile,
    stylize_tiled,
)
from stylecast.runtime.video import VIDEO_SUFFIXES, VideoReport, stylize_video

# Output suffixes kept from the input; anything else (GIF, PPM, HEIC...) is written as PNG.
KEEP_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", *VIDEO_SUFFIXES}
MEDIA_SUFFIXES = IMAGE_SUFFIXES | VIDEO_SUFFIXES


@dataclass
class StylizeOptions:
    """How `stylecast stylize` treats each input (the backend's options are their own group)."""

    max_side: int | None = option(None, "Downscale inputs so the long side is at most this.")
    allow_huge: bool = option(False, "Lift Pillow's decompression-bomb limit.")
    quality: int = option(95, "JPEG/WebP quality.")
    tile: int | None = option(None, "Largest tile side for large images (default: "
                                    f"{default_tile(DEFAULT_TILE_NORM)} px under whole-image statistics, "
                                    f"{default_tile('tile')} under --tile-norm tile, above a {AUTO_TILE_LONG_SIDE} "
                                    "px long side; 0 = never).")
    overlap: int = option(DEFAULT_OVERLAP, "Pixels shared by neighbouring tiles, blended smoothly.")
    tile_norm: str = option(DEFAULT_TILE_NORM, "How tiles are normalised: mosaic (by the whole image's "
                                               "statistics, from full-resolution patches: no patchwork), thumbnail "
                                               "(from a 1024 px copy: less memory, colours further off) or tile "
                                               "(each by its own: a patchwork; for comparison).")
    temporal_blend: float = option(0.0, "Video: blend up to this share of the previous output where the input did "
                                        "not change (0 = off).")
    input_hold: float = option(0.0, "Video: an input pixel passes to the net only once it moves more than this many "
                                    "grey levels (0 = off; 3 steadies a still camera's codec noise).")
    video_batch: int = option(1, "Video: frames per inference call.", min=1)
    strength: float = option(1.0, "Style strength: 1 full style, 0 the photo (a blend between).")
    style: str | None = option(None, "A multi-style model's style: one of its styles (starry_night) or a blend "
                                     "(wave=0.6,starry_night=0.4); default: its first style.")
    stroke: float = option(1.0, "Stroke size: the net paints the input downscaled by this (0.5: strokes twice as "
                                "large, a quarter of the work), and the result returns to full size guided by the "
                                "input's edges; 1 paints as trained. Below 1 needs stylecast[stroke].")

    def check(self) -> None:
        check_tile_norm(self.tile_norm)
        if self.tile:
            check_tiling(self.tile, self.overlap)
        check_blend(self.temporal_blend)
        check_hold(self.input_hold)
        check_stroke(self.stroke)


def output_name(source: PurePath, tag: str, taken: Callable[[str], bool]) -> str:
    """``<stem>.<tag><suffix>`` for ``source``, numbered ``-2``, ``-3``... past the names ``taken`` says are in use;
    an image suffix no writer keeps becomes ``.png``."""
    suffix = source.suffix.lower() if source.suffix.lower() in KEEP_SUFFIXES else ".png"
    name, n = f"{source.stem}.{tag}{suffix}", 1
    while taken(name):
        n += 1
        name = f"{source.stem}.{tag}-{n}{suffix}"
    return name


def tree_prefixes(folders: list[str], inputs: int) -> list[str]:
    """The subfolder of --out each input folder's tree is written under: none when the folder is the only input,
    else its own name, so the files of two inputs never collide; two input folders of one name are refused."""
    if inputs == 1:
        return [""] * len(folders)
    names = [PurePosixPath(folder.rstrip("/")).name for folder in folders]
    if len(set(names)) < len(names):
        raise StylecastError(f"two input folders are named {max(names, key=names.count)!r}; their outputs would "
                             "collide under --out: stylize them separately")
    return names


def run_image(stylizer: Stylizer, rgb: np.ndarray, tile: int | None, overlap: int,
              progress: Callable[[int, int], None] | None = None, norm: str = DEFAULT_TILE_NORM,
              strength: float | None = None, style: np.ndarray | None = None, stroke: float = 1.0) -> np.ndarray:
    """Whole-image inference, or tiled when asked (``tile``) or when the image is large (``None``); tiles are
    normalised by statistics that stand for the whole image (``norm``: mosaic or thumbnail) or each by its own
    (``"tile"``).
    ``strength`` and ``style`` (a style vector from ``Stylizer.weights``) override the stylizer's own (a server's
    per-request choices). ``stroke`` below 1 paints the image downscaled by it (``stroke.paint_at_stroke``): whether
    it needs tiles is decided at that size."""
    strengths = None if strength is None else [strength]
    styles = None if style is None else [style]

    def paint(images: list[np.ndarray]) -> list[np.ndarray]:
        (image,) = images
        side = tile if tile is not None else default_tile(norm) if max(image.shape[:2]) > AUTO_TILE_LONG_SIDE else 0
        if side and max(image.shape[:2]) > side:
            stats = None if norm == "tile" else stylizer.tile_stats(image, norm, style)
            return [stylize_tiled(lambda part: stylizer.stylize_batch([part], strengths, stats, styles)[0], image,
                                  side, overlap, progress, even=stats is not None)]
        return stylizer.stylize_batch([image], strengths, styles=styles)

    return paint_at_stroke(paint, [rgb], stroke)[0]


def frame_runner(stylizer: Stylizer, tile: int | None, overlap: int, norm: str = DEFAULT_TILE_NORM,
                 stroke: float = 1.0) -> Callable[[list[np.ndarray]], list[np.ndarray]]:
    """Video frames run as batches, unless they are large enough to need tiles (4K and up by default, decided at
    the size ``stroke`` paints them)."""
    def paint(frames: list[np.ndarray]) -> list[np.ndarray]:
        side = max(frames[0].shape[:2])
        if tile or (tile is None and side > AUTO_TILE_LONG_SIDE):
            return [run_image(stylizer, frame, tile, overlap, norm=norm) for frame in frames]
        return stylizer.stylize_batch(frames)

    return lambda frames: paint_at_stroke(paint, frames, stroke)


def stylize_image(stylizer: Stylizer, image: LoadedImage, settings: StylizeOptions,
                  progress: Callable[[int, int], None] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """A decoded image under ``settings``: (the input as the net saw it, the output, the alpha to re-attach)."""
    rgb = resize_max_side(image.rgb, settings.max_side)
    alpha = None if image.alpha is None else resize_max_side(image.alpha, settings.max_side)
    result = run_image(stylizer, rgb, settings.tile, settings.overlap, progress=progress, norm=settings.tile_norm,
                       stroke=settings.stroke)
    return rgb, result, alpha


def run_video(stylizer: Stylizer, source: Path, dest: Path, settings: StylizeOptions, model_meta: dict[str, str],
              progress: Callable[[int, int | None], None] | None = None) -> VideoReport:
    """``source`` stylized into ``dest`` (and its JSON report) under ``settings``."""
    runner = frame_runner(stylizer, settings.tile, settings.overlap, settings.tile_norm, settings.stroke)
    return stylize_video(source, dest, runner, batch=settings.video_batch, temporal_blend=settings.temporal_blend,
                         input_hold=settings.input_hold, progress=progress, model_meta=model_meta)


def model_summary(stylizer: Stylizer, models: list[Path]) -> dict[str, str]:
    """The model lineage a video's sidecar and container tags carry (a chain joins its models with '+')."""
    meta = stylizer.backend.metadata
    return {"model": "+".join(str(m) for m in models), "model_sha256": "+".join(sha256_file(m) for m in models),
            **{k: meta[k] for k in ("arch", "source_sha256", "versions") if k in meta},
            "style": stylizer.style, "precision": stylizer.precision}
