"""The models one server holds, looked up by their v2 (Triton) model name or their style, a request's style choice
turned into the style vector its model runs, and the one function the batcher calls to run a batch of them."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from stylecast.runtime.errors import StylecastError
from stylecast.runtime.formats import FILE_KINDS, ONNX, BackendOptions, kind_of, triton_model_name
from stylecast.runtime.images import encode_image, load_image, resize_long_side
from stylecast.runtime.media import run_image
from stylecast.runtime.stroke import paint_at_stroke
from stylecast.runtime.styles_catalog import blend_label, parse_style_choice, style_weights
from stylecast.runtime.stylizer import Stylizer, pad_to_min
from stylecast.runtime.tiling import DEFAULT_OVERLAP, DEFAULT_TILE_NORM, default_tile
from stylecast.serve.batching import Cancelled
from stylecast.serve.errors import HttpError

# Names a request may use for a model or style. They are only ever dictionary keys, never paths; the pattern
# (no dots, no slashes) also keeps a style read from a model's metadata from leaving --styles-dir.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
THUMBNAIL_SIDE = 160
# The longest style choice a request may send: a blend of every style of a large multi-style model fits, and the
# messages that quote a choice stay bounded.
MAX_CHOICE = 512


@dataclass
class ServedModel:
    name: str  # as `stylecast export --triton` names it
    path: Path
    stylizer: Stylizer
    thumbnails: dict[str, bytes]  # JPEGs of the styles' paintings that have one, read once at start-up

    @property
    def style(self) -> str:
        return self.stylizer.style

    @property
    def styles(self) -> list[str]:
        """Its styles in the row order of its style vector; a single-style model's one style."""
        return self.stylizer.styles

    @property
    def multi_style(self) -> bool:
        return len(self.styles) > 1

    @property
    def platform(self) -> str:
        kind = kind_of(self.path.suffix)
        return (kind or FILE_KINDS[ONNX]).triton[0]

    def fits(self, batch: int, height: int, width: int) -> bool:
        """Within the largest input the model's engine was built for (any size where it has no such bound)."""
        largest = self.stylizer.backend.max_shape()
        return largest is None or (batch <= largest[0] and height <= largest[2] and width <= largest[3])

    def check_tensor(self, height: int, width: int) -> None:
        """A v2 tensor runs as sent, so one larger than the engine's profile is refused, naming the limit (a
        batch above the profile's is split instead)."""
        largest = self.stylizer.backend.max_shape()
        if not self.fits(1, height, width):
            raise HttpError(400, f"input 'image': {width}x{height} is above the engine's profile of "
                                 f"{largest[3]}x{largest[2]}; send smaller tiles or use /v1/stylize, which tiles")

    def forward(self, batch: np.ndarray, style: np.ndarray, stroke: float = 1.0) -> np.ndarray:
        """The model alone on ``batch`` in the styles ``style`` (a row per image), in chunks of the engine
        profile's largest batch; ``stroke`` below 1 paints the batch downscaled by it (``paint_at_stroke``)."""
        if stroke < 1.0:
            def paint(images: list[np.ndarray]) -> list[np.ndarray]:
                height, width = images[0].shape[:2]  # padded where the model needs more, as stylize_batch pads
                padded = np.stack([pad_to_min(image, self.stylizer.min_side) for image in images])
                out = self.forward(np.ascontiguousarray(padded.transpose(0, 3, 1, 2)), style)
                return list(out[:, :, :height, :width].transpose(0, 2, 3, 1))

            painted = paint_at_stroke(paint, list(batch.transpose(0, 2, 3, 1)), stroke)
            return np.ascontiguousarray(np.stack(painted).transpose(0, 3, 1, 2))
        largest = self.stylizer.backend.max_shape()
        step = largest[0] if largest else len(batch)
        return np.concatenate([self.stylizer.forward(batch[i:i + step], style=style[i:i + step])
                               for i in range(0, len(batch), step)])

    def weights(self, choice: dict[str, float], where: str) -> np.ndarray:
        """The style vector of a parsed choice over this model's styles; a fault is a 400 naming ``where``."""
        try:
            return style_weights(self.styles, choice)
        except StylecastError as exc:
            raise HttpError(400, f"{where}: {exc}") from exc

    def v2_styles(self, tensor: np.ndarray | None, choice: str | None, batch: int) -> np.ndarray:
        """The [batch, N] style rows of a v2 request: its ``style`` tensor, or its ``style`` parameter (a name or
        a blend), or neither: the model's first style."""
        if tensor is not None and choice is not None:
            raise HttpError(400, "parameters.style: the request also sends input 'style'; send one of them")
        if tensor is not None:
            return tensor
        vector = (self.stylizer.style_vector if choice is None
                  else self.weights(parse_choice(choice, "parameters.style"), "parameters.style"))
        return np.repeat(vector[None], batch, axis=0)

    def label(self, vector: np.ndarray) -> str:
        """The style a vector paints, as `stylecast stylize` names its outputs (``wave60-starry_night40``)."""
        return blend_label(self.styles, vector)

    def describe(self) -> list[dict]:
        """One entry per style: a single-style model's own, or each style of a multi-style model."""
        common = {"model": self.name, "precision": self.stylizer.precision,
                  "backend": self.stylizer.backend.describe(), "multi_style": self.multi_style}
        if not self.multi_style:
            return [{"name": self.style, **common,
                     "thumbnail": f"/v1/styles/{self.name}/thumbnail.jpg" if self.thumbnails else None}]
        return [{"name": style, **common,
                 "thumbnail": f"/v1/styles/{self.name}/{style}/thumbnail.jpg" if style in self.thumbnails else None}
                for style in self.styles]


def parse_choice(text: str, where: str) -> dict[str, float]:
    """A request's style choice, ``starry_night`` or ``wave=0.6,starry_night=0.4``, as weights by name; a
    malformed one is a 400 naming ``where``. Names are only ever looked up, never used as paths."""
    if len(text) > MAX_CHOICE:
        raise HttpError(400, f"{where}: longer than {MAX_CHOICE} characters")
    try:
        choice = parse_style_choice(text)
    except StylecastError as exc:
        raise HttpError(400, f"{where}: {exc}") from exc
    if not all(NAME.fullmatch(name) for name in choice):
        raise HttpError(400, f"{where}: invalid style name: letters, digits, _ and - only (see GET /v1/styles)")
    return choice


def thumbnail(styles_dir: Path, style: str) -> bytes | None:
    """``styles_dir/<style>.jpg`` shrunk to a small JPEG, if the style has a painting there."""
    painting = styles_dir / f"{style}.jpg"
    if not NAME.fullmatch(style) or not painting.is_file():
        return None
    return encode_image(resize_long_side(load_image(painting).rgb, THUMBNAIL_SIDE), None, "JPEG", 85)


class ModelSet:
    """Every ``--model``, each its own Stylizer (a server serves models side by side; it does not chain them)."""

    def __init__(self, paths: list[Path], styles_dir: Path, options: BackendOptions | None = None) -> None:
        if not paths:
            raise StylecastError("no model given; pass --model PATH (repeat it to serve several)")
        self.models: dict[str, ServedModel] = {}
        for path in paths:
            name = triton_model_name(Path(path))
            if name in self.models:
                raise StylecastError(f"{path}: two models would both be served as {name!r}; rename one file")
            if not NAME.fullmatch(name):
                raise StylecastError(f"{path}: {name!r} is not a usable model name (letters, digits, _ and -); "
                                     "rename the file")
            stylizer = Stylizer(Path(path), options=options)
            found = {style: thumbnail(styles_dir, style) for style in stylizer.styles}
            self.models[name] = ServedModel(name, Path(path), stylizer,
                                            {style: jpeg for style, jpeg in found.items() if jpeg is not None})

    def bind_thread(self) -> None:
        """Called on the inference thread before its first batch."""
        for model in self.models.values():
            model.stylizer.bind_thread()

    def release_thread(self) -> None:
        for model in self.models.values():
            model.stylizer.release_thread()

    def by_name(self, name: str) -> ServedModel:
        """A v2 model; 404 names the loaded ones."""
        if name not in self.models:
            raise HttpError(404, f"unknown model {name[:64]!r}; loaded: {', '.join(self.models)}")
        return self.models[name]

    def pick(self, style: str | None, model: str | None = None) -> tuple[ServedModel, np.ndarray]:
        """The model and style vector a /v1 request asks for. ``model``: a v2 model name (default: any model).
        ``style``: that model's name, one of its styles, or a blend of the styles of one multi-style model
        (``wave=0.6,starry_night=0.4``); the first model that holds it serves it. Neither: the first model in its
        first style."""
        candidates = [self.by_name(model)] if model is not None else list(self.models.values())
        if style is None:
            return candidates[0], candidates[0].stylizer.style_vector
        if style in self.models and model in (None, style):
            return self.models[style], self.models[style].stylizer.style_vector
        choice = parse_choice(style, "style")
        holders = [m for m in candidates if set(choice) <= set(m.styles)]
        if holders:
            return holders[0], holders[0].weights(choice, "style")
        held = {name for m in candidates for name in m.styles}
        unknown = sorted(set(choice) - held)
        if unknown:
            known = sorted(held | ({model} if model else set(self.models)))
            raise HttpError(404, f"unknown style(s) {', '.join(unknown)}; available: {', '.join(known)}")
        blends = "; ".join(f"{m.name}: {', '.join(m.styles)}" for m in candidates if m.multi_style) or "none here"
        raise HttpError(400, f"a blend takes the styles of one multi-style model ({blends})")

    def run(self, key: Hashable, items: list[Any], should_stop: Callable[[], bool]) -> list[Any]:
        """The batcher's work for ``key = (kind, model name, size...)``; each item ends with its stroke size, one
        per batch where the key holds it:

        - ``v2``: (float NCHW tensor, [batch, N] style rows, stroke) items, concatenated and run through the model
          alone (what Triton computes);
        - ``image``: (HxWx3 uint8, strength, style vector, stroke) items of one size, run as one batch as
          `stylecast stylize` runs them (their styles may differ: the model takes one style row per image);
        - ``tiled``: one large image in tiles of the key's side and overlap, as `stylecast stylize` tiles large
          photos; it stops between tiles once ``should_stop()`` says its request was given up.
        """
        kind, name = key[0], key[1]
        stylizer = self.models[name].stylizer
        if kind == "v2":
            out = self.models[name].forward(np.concatenate([image for image, _, _ in items]),
                                            np.concatenate([style for _, style, _ in items]), items[0][2])
            return np.split(out, np.cumsum([len(image) for image, _, _ in items])[:-1])
        if kind == "tiled":
            def step(done: int, total: int) -> None:
                if should_stop():
                    raise Cancelled(f"given up after {done} of {total} tiles")

            tile, overlap = key[3], key[4]
            return [run_image(stylizer, rgb, tile, overlap, step, strength=strength, style=style, stroke=stroke)
                    for rgb, strength, style, stroke in items]
        return paint_at_stroke(lambda images: stylizer.stylize_batch(images, [item[1] for item in items],
                                                                     styles=[item[2] for item in items]),
                               [item[0] for item in items], items[0][3])


def image_key(model: ServedModel, rgb: np.ndarray, max_pixels: int, stroke: float = 1.0) -> tuple:
    """Same-size images of one model and stroke size batch together, whatever their styles; one above
    ``max_pixels`` (the most a batch may hold) or outside the model's profile runs alone, in tiles (where its stroke
    size still paints it smaller, the tiles are decided at that size)."""
    height, width = rgb.shape[:2]
    if height * width > max_pixels or not model.fits(1, height, width):
        return ("tiled", model.name, id(rgb), *serve_tiling(model, max_pixels))
    return ("image", model.name, height, width, stroke)


def serve_tiling(model: ServedModel, max_pixels: int) -> tuple[int, int]:
    """(tile side, overlap) for an image run in tiles: the default tiles, smaller where the batch budget
    (``max_pixels``) or the engine's profile is."""
    largest = model.stylizer.backend.max_shape()
    tile = max(32, min(default_tile(DEFAULT_TILE_NORM), math.isqrt(max_pixels), *(largest[2:] if largest else ())))
    return tile, min(DEFAULT_OVERLAP, tile // 4)
