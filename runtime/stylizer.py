"""`Stylizer`: the Python API of the runtime. numpy in, numpy out, any backend behind it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from stylecast.runtime.artifacts import sha256_file
from stylecast.runtime.backends import Backend, load_backend
from stylecast.runtime.errors import StylecastError
from stylecast.runtime.formats import GRAPH_KEY, SINGLE_SHA_KEY, BackendOptions, GraphRole, companion_path
from stylecast.runtime.images import resize_max_side
from stylecast.runtime.tiling import DEFAULT_TILE_NORM, stats_patches


class Stylizer:
    """Stylize RGB uint8 images with one exported model, or a chain of them, at a chosen strength.

    >>> stylizer = Stylizer("artifacts/wave/wave.fp32.onnx")   # doctest: +SKIP
    >>> out = stylizer(rgb)                                     # HxWx3 uint8 -> HxWx3 uint8

    A list of models runs in order, each on the previous one's float output (the seeds' texture
    then style); ``strength`` below 1 blends the result with the photo, 0 giving the photo back.
    """

    def __init__(self, model: Path | str | list[Path | str], backend: str = "auto",
                 providers: list[str] | None = None, threads: int | None = None, strength: float = 1.0,
                 options: BackendOptions | None = None) -> None:
        """``options`` (the CLI's backend option group) replaces ``backend``, ``providers`` and ``threads``."""
        models = model if isinstance(model, list) else [model]
        if not models:
            raise StylecastError("no model given; pass --model PATH (repeat it to chain models)")
        if not 0.0 <= strength <= 1.0:
            raise StylecastError(f"--strength {strength}: must be between 0 (the photo) and 1 (full style)")
        self.options = options or BackendOptions(backend=backend, provider=providers, threads=threads)
        self.backends: list[Backend] = [load_backend(Path(m), self.options) for m in models]
        self._apply: list[Backend] | None = None
        self._digests: dict[Path, str] = {}
        self.backend = self.backends[0]
        self.strength = strength
        self.min_side = max(min_side(b.metadata) for b in self.backends)

    def _joined(self, key: str) -> str:
        return "+".join(dict.fromkeys(b.metadata.get(key, "unknown") for b in self.backends))

    @property
    def style(self) -> str:
        return self._joined("style")

    @property
    def precision(self) -> str:
        return self._joined("precision")

    def __call__(self, rgb: np.ndarray, max_side: int | None = None) -> np.ndarray:
        return self.stylize_batch([resize_max_side(rgb, max_side)])[0]

    def stylize_batch(self, images: list[np.ndarray], strengths: list[float] | None = None,
                      stats: list[np.ndarray] | None = None) -> list[np.ndarray]:
        """Images of one size run as one batch; mixed sizes run one by one. ``strengths`` (one per image, a
        server's per-request choice) replace the stylizer's own strength; ``stats`` (from :meth:`tile_stats`)
        normalise every image, tiles of one photo, by that photo's statistics."""
        strengths = [self.strength] * len(images) if strengths is None else strengths
        if len({im.shape for im in images}) == 1:
            height, width = images[0].shape[:2]
            if min(height, width) < self.min_side:
                padded = [pad_to_min(im, self.min_side) for im in images]
                return [out[:height, :width] for out in self.stylize_batch(padded, strengths, stats)]
            photos = np.stack(images).transpose(0, 3, 1, 2).astype(np.float32)
            batch = self.forward(photos, stats)
            if min(strengths) < 1.0:
                share = np.asarray(strengths, np.float32)[:, None, None, None]
                batch = share * batch + (1.0 - share) * photos
            return list(to_uint8(batch))
        return [self.stylize_batch([im], [s], stats)[0] for im, s in zip(images, strengths, strict=True)]

    def bind_thread(self) -> None:
        """Make every engine usable from the calling thread (see ``Backend.bind_thread``)."""
        for backend in self.backends:
            backend.bind_thread()

    def release_thread(self) -> None:
        for backend in self.backends:
            backend.release_thread()

    def close(self) -> None:
        for backend in [*self.backends, *(self._apply or ())]:
            backend.close()

    def __enter__(self) -> Stylizer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def forward(self, batch: np.ndarray, stats: list[np.ndarray] | None = None) -> np.ndarray:
        """The models alone, in order: float32 NCHW RGB in [0, 255] in and out (what a Triton model computes);
        with ``stats``, each model's apply graph normalises by them instead of by the batch itself."""
        if stats is None:
            for backend in self.backends:
                batch = backend.run(batch)
            return batch
        for apply, model_stats in zip(self.apply_graphs(), stats, strict=True):
            batch = apply.run(batch, np.repeat(model_stats, len(batch), axis=0))
        return batch

    def tile_stats(self, rgb: np.ndarray, norm: str = DEFAULT_TILE_NORM) -> list[np.ndarray]:
        """Each model's InstanceNorm statistics for the whole photo, pooled over its statistics patches under
        ``norm`` (see ``tiling.stats_patches``): tiles normalised by them fit together as the whole image would.
        Each statistics graph is opened for the call and closed after it: its pooled batch is a tiled run's
        largest allocation, and closing gives that memory back before the tiles run."""
        batch = stats_patches(rgb, norm)
        found = []
        for i, (single, apply) in enumerate(zip(self.backends, self.apply_graphs(), strict=True)):
            with self._companion(single, "stats") as stats:
                found.append(stats.run(batch).copy())  # a view of the output would keep its memory arena alive
            if i + 1 < len(self.backends):  # a chain's next model takes its statistics from this one's output
                batch = apply.run(batch, np.repeat(found[-1], len(batch), axis=0))
        return found

    def apply_graphs(self) -> list[Backend]:
        """Each model's apply graph, opened on first use and checked against the model."""
        if self._apply is None:
            self._apply = [self._companion(b, "apply") for b in self.backends]
        return self._apply

    def _companion(self, single: Backend, role: GraphRole) -> Backend:
        if single.path not in self._digests:  # hashed once: the statistics graph opens again for every photo
            self._digests[single.path] = sha256_file(single.path)
        return companion(single, role, self.options, self._digests[single.path])


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
