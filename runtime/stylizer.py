"""`Stylizer`: the Python API of the runtime. numpy in, numpy out, any backend behind it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from stylecast.runtime.artifacts import sha256_file
from stylecast.runtime.backends import Backend, load_backend
from stylecast.runtime.errors import StylecastError
from stylecast.runtime.formats import GRAPH_KEY, SINGLE_SHA_KEY, STYLE, BackendOptions, GraphRole, companion_path
from stylecast.runtime.images import resize_max_side
from stylecast.runtime.styles_catalog import blend_label, model_styles, parse_style_choice, style_weights
from stylecast.runtime.tiling import DEFAULT_TILE_NORM, stats_patches


class Stylizer:
    """Stylize RGB uint8 images with one exported model, or a chain of them, at a chosen strength.

    >>> stylizer = Stylizer("artifacts/wave/wave.fp32.onnx")   # doctest: +SKIP
    >>> out = stylizer(rgb)                                     # HxWx3 uint8 -> HxWx3 uint8

    A list of models runs in order, each on the previous one's float output (the seeds' texture
    then style); ``strength`` below 1 blends the result with the photo, 0 giving the photo back.

    A multi-style model paints the style chosen by ``style``: one of its :attr:`styles` (``"starry_night"``) or a
    blend (``"wave=0.6,starry_night=0.4"``); without a choice it paints its first style. A single-style model takes
    only its own style's name. In a chain the choice applies to its multi-style models. Calls in the stylizer's own
    choice run each model's graph with that choice folded in (:meth:`fixed_graphs`); calls that pass styles per image
    (a server's mixed batches) run the general graph, which takes them.
    """

    def __init__(self, model: Path | str | list[Path | str], backend: str = "auto",
                 providers: list[str] | None = None, threads: int | None = None, strength: float = 1.0,
                 options: BackendOptions | None = None, style: str | None = None) -> None:
        """``options`` (the CLI's backend option group) replaces ``backend``, ``providers`` and ``threads``."""
        models = model if isinstance(model, list) else [model]
        if not models:
            raise StylecastError("no model given; pass --model PATH (repeat it to chain models)")
        if not 0.0 <= strength <= 1.0:
            raise StylecastError(f"--strength {strength}: must be between 0 (the photo) and 1 (full style)")
        self.options = options or BackendOptions(backend=backend, provider=providers, threads=threads)
        self.backends: list[Backend] = []
        self._apply: list[Backend] | None = None
        self._fixed: list[Backend] | None = None
        try:
            for m in models:
                self.backends.append(load_backend(Path(m), self.options))
            self.styles = chain_styles([b.metadata for b in self.backends])
            self.style_vector = choice_vector(self.styles, style)
        except StylecastError:
            self.close()
            raise
        self._digests: dict[Path, str] = {}
        self.backend = self.backends[0]
        self.strength, self.choice = strength, style
        self.min_side = max(min_side(b.metadata) for b in self.backends)

    def _joined(self, key: str) -> str:
        return "+".join(dict.fromkeys(b.metadata.get(key, "unknown") for b in self.backends))

    @property
    def style(self) -> str:
        """What the outputs are tagged with: each model's style, a multi-style one's being the chosen style (see
        ``styles_catalog.blend_label``)."""
        return style_tag([b.metadata for b in self.backends], self.choice)

    def weights(self, choice: str) -> np.ndarray:
        """The style vector of ``choice`` (a name, or a blend ``wave=0.6,starry_night=0.4``) over :attr:`styles`:
        what ``stylize_batch(..., styles=...)`` takes, one per image, for a per-request choice."""
        return choice_vector(self.styles, choice)

    @property
    def precision(self) -> str:
        return self._joined("precision")

    def __call__(self, rgb: np.ndarray, max_side: int | None = None) -> np.ndarray:
        return self.stylize_batch([resize_max_side(rgb, max_side)])[0]

    def stylize_batch(self, images: list[np.ndarray], strengths: list[float] | None = None,
                      stats: list[np.ndarray] | None = None, styles: list[np.ndarray] | None = None) -> list[np.ndarray]:
        """Images of one size run as one batch; mixed sizes run one by one. ``strengths`` and ``styles`` (one per
        image, a server's per-request choices; a style vector from :meth:`weights`) replace the stylizer's own;
        ``stats`` (from :meth:`tile_stats`) normalise every image, tiles of one photo, by that photo's
        statistics."""
        strengths = [self.strength] * len(images) if strengths is None else strengths
        if len({im.shape for im in images}) == 1:
            height, width = images[0].shape[:2]
            if min(height, width) < self.min_side:
                padded = [pad_to_min(im, self.min_side) for im in images]
                return [out[:height, :width] for out in self.stylize_batch(padded, strengths, stats, styles)]
            photos = np.stack(images).transpose(0, 3, 1, 2).astype(np.float32)
            batch = self.forward(photos, stats, None if styles is None else np.stack(styles))
            if min(strengths) < 1.0:
                share = np.asarray(strengths, np.float32)[:, None, None, None]
                batch = share * batch + (1.0 - share) * photos
            return list(to_uint8(batch))
        rows = [None] * len(images) if styles is None else [[v] for v in styles]
        return [self.stylize_batch([im], [s], stats, row)[0] for im, s, row in zip(images, strengths, rows, strict=True)]

    def bind_thread(self) -> None:
        """Make every engine usable from the calling thread (see ``Backend.bind_thread``)."""
        for backend in self.backends:
            backend.bind_thread()

    def release_thread(self) -> None:
        for backend in self.backends:
            backend.release_thread()

    def close(self) -> None:
        folded = [b for b in self._fixed or () if all(b is not general for general in self.backends)]
        for backend in [*self.backends, *(self._apply or ()), *folded]:
            backend.close()

    def __enter__(self) -> Stylizer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def forward(self, batch: np.ndarray, stats: list[np.ndarray] | None = None,
                style: np.ndarray | None = None) -> np.ndarray:
        """The models alone, in order: float32 NCHW RGB in [0, 255] in and out (what a Triton model computes);
        ``style`` [N, len(styles)] weighs the multi-style models' styles per image, through their general graphs
        (default: the stylizer's choice, through :meth:`fixed_graphs`); with ``stats``, each model's apply graph
        normalises by them instead of by the batch itself."""
        graphs = self.fixed_graphs() if style is None and stats is None else self.backends
        style = np.repeat(self.style_vector[None], len(batch), axis=0) if style is None else style
        if stats is None:
            for backend in graphs:
                batch = backend.run(batch, **_style_input(backend, style))
            return batch
        for apply, model_stats in zip(self.apply_graphs(), stats, strict=True):
            batch = apply.run(batch, np.repeat(model_stats, len(batch), axis=0), **_style_input(apply, style))
        return batch

    def tile_stats(self, rgb: np.ndarray, norm: str = DEFAULT_TILE_NORM,
                   style: np.ndarray | None = None) -> list[np.ndarray]:
        """Each model's InstanceNorm statistics for the whole photo, pooled over its statistics patches under
        ``norm`` (see ``tiling.stats_patches``): tiles normalised by them fit together as the whole image would.
        A multi-style model's statistics depend on its style (its earlier layers' affine do): ``style`` is the
        photo's style vector (default: the stylizer's choice), which its tiles must then be stylized in too.
        Each statistics graph is opened for the call and closed after it: its pooled batch is a tiled run's
        largest allocation, and closing gives that memory back before the tiles run."""
        batch = stats_patches(rgb, norm)
        row = (self.style_vector if style is None else style)[None]  # one row for the photo
        found = []
        for i, (single, apply) in enumerate(zip(self.backends, self.apply_graphs(), strict=True)):
            with self._companion(single, "stats") as stats:
                # a view of the output would keep its memory arena alive
                found.append(stats.run(batch, **_style_input(stats, row)).copy())
            if i + 1 < len(self.backends):  # a chain's next model takes its statistics from this one's output
                rows = np.repeat(row, len(batch), axis=0)
                batch = apply.run(batch, np.repeat(found[-1], len(batch), axis=0), **_style_input(apply, rows))
        return found

    def fixed_graphs(self) -> list[Backend]:
        """Each model's single-pass graph in the stylizer's own style choice, opened on first use: a multi-style
        model's with the choice folded into its InstanceNorms (``Backend.specialized``), which does a single-style
        net's work; the model itself where there is nothing to fold or its engine cannot (a prebuilt engine). Opened
        only when a call uses the stylizer's own choice, so a server, whose calls all pass styles per image, holds
        one graph per model."""
        if self._fixed is None:
            self._fixed = [b.specialized(self.style_vector) or b for b in self.backends]
        return self._fixed

    def apply_graphs(self) -> list[Backend]:
        """Each model's apply graph, opened on first use and checked against the model."""
        if self._apply is None:
            self._apply = [self._companion(b, "apply") for b in self.backends]
        return self._apply

    def _companion(self, single: Backend, role: GraphRole) -> Backend:
        if single.path not in self._digests:  # hashed once: the statistics graph opens again for every photo
            self._digests[single.path] = sha256_file(single.path)
        return companion(single, role, self.options, self._digests[single.path])


def _style_input(backend: Backend, style: np.ndarray) -> dict[str, np.ndarray]:
    """``run``'s style argument for a multi-style graph; none for a single-style one (a chain's other models, and
    plug-in backends whose ``run`` takes no style)."""
    return {"style": style} if STYLE in backend.inputs else {}


def chain_styles(metadata: list[dict[str, str]]) -> list[str]:
    """The styles a choice is made of for a model or a chain of models with these metadata: a multi-style model's
    (every one of a chain's must hold the same), else each model's own."""
    held = [model_styles(meta, meta.get("style", "model")) for meta in metadata]
    multi = [names for names in held if len(names) > 1]
    if any(names != multi[0] for names in multi):
        raise StylecastError(f"chained multi-style models hold different styles ({' vs '.join(map(', '.join, multi))}); "
                             "chain models of the same styles")
    return multi[0] if multi else list(dict.fromkeys(names[0] for names in held))


def choice_vector(names: list[str], choice: str | None) -> np.ndarray:
    """The style vector of ``choice`` (a name or a blend) over ``names``; no choice is the first style."""
    return style_weights(names, parse_style_choice(choice) if choice is not None else {names[0]: 1.0})


def style_tag(metadata: list[dict[str, str]], choice: str | None) -> str:
    """What outputs are tagged with: each model's style joined by '+', a multi-style model's being the style
    ``choice`` paints (``blend_label``)."""
    names = chain_styles(metadata)
    vector = choice_vector(names, choice)
    return "+".join(dict.fromkeys(blend_label(names, vector) if "styles" in meta else meta.get("style", "unknown")
                                  for meta in metadata))


# The first conv's reflection padding needs a side longer than kernel // 2 (5 px for Johnson's 9x9, measured);
# 16 covers first kernels up to 31.
MIN_SIDE = 16


def min_side(metadata: dict[str, str]) -> int:
    """The smallest side a model runs: MIN_SIDE, or more where the net reflect-pads its input (``input_pad``),
    since a reflection needs a side longer than the padding."""
    try:
        pad = int(json.loads(metadata.get("arch", "{}")).get("input_pad", 0))
    except (ValueError, TypeError, AttributeError):  # a foreign arch string: nothing says the net pads
        pad = 0
    return max(MIN_SIDE, pad + 1)


def companion(single: Backend, role: GraphRole, options: BackendOptions, digest: str) -> Backend:
    """The ``role`` graph exported beside ``single`` (whose SHA-256 is ``digest``), refused when it was made from
    another file."""
    path = companion_path(single.path, role)
    if not path.is_file():
        raise StylecastError(f"{single.path}: its tiled graphs are missing ({path}); re-export the model with "
                             "`stylecast export` (or pass --tile-norm tile)")
    graph = load_backend(path, options)
    made_from = graph.metadata.get(SINGLE_SHA_KEY)
    if graph.metadata.get(GRAPH_KEY) != role or made_from != digest:
        graph.close()
        raise StylecastError(f"{path}: not the {role} graph of {single.path} (stale or foreign); re-export the "
                             "model with `stylecast export`")
    return graph


def pad_to_min(rgb: np.ndarray, side: int = MIN_SIDE) -> np.ndarray:
    """Repeat the edge pixels of a tiny image (e.g. 1x1) up to ``side``; the caller crops back."""
    height, width = rgb.shape[:2]
    return np.pad(rgb, ((0, max(0, side - height)), (0, max(0, side - width)), (0, 0)), mode="edge")


def to_uint8(batch: np.ndarray) -> np.ndarray:
    """NCHW float [0, 255] -> NHWC uint8, rounding rather than truncating."""
    return np.clip(np.rint(batch), 0, 255).astype(np.uint8).transpose(0, 2, 3, 1)
