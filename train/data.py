"""Training batches from any folder of photos, as a pure function of (seed, step).

Because batch ``k`` depends only on the seed and ``k`` (never on what ran before), a resumed
run sees exactly the batches it would have seen, and DDP ranks take disjoint slices of it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from stylecast.runtime.artifacts import sha256_file
from stylecast.runtime.errors import StylecastError
from stylecast.runtime.images import IMAGE_SUFFIXES, load_image
from stylecast.train.codec import codec_change


def list_images(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise StylecastError(f"{folder}: dataset folder not found; pass --data DIR with photos in it")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise StylecastError(f"{folder}: no images found (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
    return files


def read_hash_list(path: Path) -> dict[str, str]:
    """A ``sha256  name`` list (``#`` comments allowed) as {sha256: name}: photos identified by content."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise StylecastError(f"{path}: cannot read the photo hash list ({exc.strerror})") from exc
    found = {}
    for number, line in enumerate(lines, 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        digest, _, name = text.partition(" ")
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise StylecastError(f"{path}:{number}: expected 'SHA256  NAME', got {line.strip()!r}")
        found[digest] = name.strip()
    return found


def pick_heldout(files: list[Path], count: int) -> dict[str, Path]:
    """The ``count`` photos with the smallest sha256: a choice by content, stable under renames and additions
    elsewhere in the order, and unrelated to the photos' names or subjects."""
    hashed = sorted((sha256_file(path), path) for path in files)
    return dict(hashed[:count])


def without(files: list[Path], excluded: set[str]) -> list[Path]:
    """``files`` minus those whose content hash is in ``excluded`` (the held-out evaluation photos)."""
    kept = [path for path in files if sha256_file(path) not in excluded]
    if not kept:
        raise StylecastError("every training photo is in the held-out list; add photos or pass another --exclude")
    return kept


NOISE_KINDS = ("white", "blocks", "codec")
BLOCK, BLOCK_SHARE = 4, 0.25  # the `blocks` noise: a quarter of the 4x4 blocks, each shifted by a constant


def step_noise(images: torch.Tensor, sigma: float, seed: int, step: int, kind: str = "white") -> torch.Tensor:
    """Noise (grey levels, std ``sigma``) for training step ``step`` on ``images`` (NCHW, 0-255): a pure function
    of (images, seed, step), like the batches, so a resumed run draws the same noise on any device.

    ``white``: independent per pixel, like a sensor's. ``blocks``: scattered 4x4 blocks shifted a level or two,
    a rough model of what a still camera's H.264 video changes between frames. ``codec``: that change itself
    (``train.codec``), scaled over the batch to std ``sigma``. A net that shrugs off white noise can still
    multiply the codec's local changes (the quality report's flicker and its noise gains show it)."""
    if kind == "codec":  # draws from its own stream: the torch generator below is for the other kinds
        return _codec_noise(images, sigma, np.random.default_rng([seed, step, 3]))
    shape = tuple(images.shape)
    generator = torch.Generator().manual_seed(int(np.random.default_rng([seed, step, 2]).integers(2**62)))
    if kind == "white":
        return torch.randn(shape, generator=generator) * sigma
    if kind != "blocks":
        raise StylecastError(f"--stability-noise {kind}: choose {' or '.join(NOISE_KINDS)}")
    batch, channels, height, width = shape
    rows, cols = -(-height // BLOCK), -(-width // BLOCK)
    offsets = torch.randn((batch, channels, rows, cols), generator=generator) * sigma
    kept = torch.rand((batch, 1, rows, cols), generator=generator) < BLOCK_SHARE  # a block is re-coded whole
    blocks = (offsets * kept).repeat_interleave(BLOCK, -2).repeat_interleave(BLOCK, -1)
    return blocks[..., :height, :width].contiguous()


def _codec_noise(images: torch.Tensor, sigma: float, rng: np.random.Generator) -> torch.Tensor:
    """Each image's codec change, the batch scaled as one: the real changes are a tenth of a grey level on
    average and often none at all, too small for the term's weight to mean the same as with the other kinds."""
    pixels = images.detach().round().clamp(0, 255).to("cpu", torch.uint8).permute(0, 2, 3, 1).numpy()
    change = torch.from_numpy(np.stack([codec_change(rgb, rng) for rgb in pixels])).permute(0, 3, 1, 2)
    spread = float(change.std())
    return (change * (sigma / spread) if spread > 0 else change).contiguous()


def random_crop(rgb: np.ndarray, crop: int, rng: np.random.Generator,
                scale: tuple[int, int]) -> np.ndarray:
    """Resize so the short side is a random size in ``scale`` (>= crop), then take a random crop."""
    h, w = rgb.shape[:2]
    short = int(rng.integers(max(scale[0], crop), max(scale[1], crop) + 1))
    factor = short / min(h, w)
    size = (max(crop, round(w * factor)), max(crop, round(h * factor)))
    img = Image.fromarray(rgb).resize(size, Image.Resampling.BILINEAR)
    top = int(rng.integers(0, size[1] - crop + 1))
    left = int(rng.integers(0, size[0] - crop + 1))
    arr = np.asarray(img)[top:top + crop, left:left + crop]
    return arr[:, ::-1] if rng.random() < 0.5 else arr


class StepBatches(Dataset):
    """Item ``k`` is this rank's share of the batch for training step ``k``."""

    def __init__(self, files: list[Path], batch: int, crop: int, seed: int,
                 scale: tuple[int, int] = (160, 320), rank: int = 0, world: int = 1) -> None:
        self.files, self.batch, self.crop, self.seed = files, batch, crop, seed
        self.scale, self.rank, self.world = scale, rank, world

    def __len__(self) -> int:  # steps are unbounded; the sampler decides which are drawn
        return 2**62

    def _index(self, position: int) -> int:
        epoch, offset = divmod(position, len(self.files))
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.files))
        return int(order[offset])

    def __getitem__(self, step: int) -> torch.Tensor:
        crops = []
        for j in range(self.batch):
            position = (step * self.world + self.rank) * self.batch + j
            rng = np.random.default_rng([self.seed, position, 1])
            rgb = load_image(self.files[self._index(position)]).rgb
            crops.append(random_crop(rgb, self.crop, rng, self.scale))
        batch = np.stack(crops).transpose(0, 3, 1, 2).astype(np.float32)
        return torch.from_numpy(batch)


class StepSampler(torch.utils.data.Sampler):
    def __init__(self, start: int, stop: int) -> None:
        self.start, self.stop = start, stop

    def __iter__(self):
        return iter(range(self.start, self.stop))

    def __len__(self) -> int:
        return self.stop - self.start


def load_style_image(path: Path, size: int | None) -> torch.Tensor:
    """The style image as a 1x3xHxW float tensor in [0, 255], long side resized to ``size``."""
    rgb = load_image(path).rgb
    if size:
        h, w = rgb.shape[:2]
        scale = size / max(h, w)
        rgb = np.asarray(Image.fromarray(rgb).resize((round(w * scale), round(h * scale)),
                                                     Image.Resampling.LANCZOS))
    return torch.from_numpy(rgb.transpose(2, 0, 1).astype(np.float32)).unsqueeze(0)
