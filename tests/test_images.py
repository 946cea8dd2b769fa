"""Reading what users really have, and writing without ever leaving a partial file."""

import io
import sys

import numpy as np
import pytest
from PIL import Image

from stylecast.runtime.errors import StylecastError, TooLarge
from stylecast.runtime.images import (
    atomic_write,
    decode_image,
    enable_heif,
    encode_image,
    is_heif,
    load_image,
    resize_max_side,
    save_image,
)


def _gradient(h=20, w=30):
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 8, y * 12, (x + y) * 4], -1).astype(np.uint8)


def test_exif_orientation_applied(tmp_path):
    img = Image.fromarray(_gradient(20, 30))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    img.save(tmp_path / "rot.jpg", exif=exif)
    assert load_image(tmp_path / "rot.jpg").rgb.shape == (30, 20, 3)


def test_rgba_alpha_is_kept_and_round_trips(tmp_path):
    rgba = np.dstack([_gradient(), np.full((20, 30), 77, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    loaded = load_image(tmp_path / "a.png")
    assert loaded.alpha is not None and (loaded.alpha == 77).all()
    save_image(tmp_path / "out.png", loaded.rgb, loaded.alpha)
    assert Image.open(tmp_path / "out.png").mode == "RGBA"


@pytest.mark.parametrize("mode", ["L", "P", "CMYK", "1", "LA"])
def test_modes_become_rgb(tmp_path, mode):
    path = tmp_path / ("x.tif" if mode == "CMYK" else "x.png")
    Image.fromarray(_gradient()).convert(mode).save(path)
    assert load_image(path).rgb.shape == (20, 30, 3)


def test_16bit_greyscale_scaled_not_clipped(tmp_path):
    data = (np.linspace(0, 65535, 20 * 30).reshape(20, 30)).astype(np.uint16)
    Image.fromarray(data).save(tmp_path / "deep.png")
    rgb = load_image(tmp_path / "deep.png").rgb
    assert rgb.max() == 255 and rgb.min() == 0 and len(np.unique(rgb)) > 100


def test_animated_gif_uses_first_frame_and_says_so(tmp_path):
    frames = [Image.new("RGB", (10, 10), c) for c in ("red", "blue")]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    loaded = load_image(tmp_path / "anim.gif")
    assert "first frame" in loaded.note and loaded.rgb[0, 0, 0] > 200


@pytest.mark.parametrize("content,match", [
    (b"", "not an image"),
    (b"this is text, not a jpeg", "not an image"),
])
def test_bad_files_one_clear_error(tmp_path, content, match):
    path = tmp_path / "bad.jpg"
    path.write_bytes(content)
    with pytest.raises(StylecastError, match=match) as info:
        load_image(path)
    assert str(path) in str(info.value)


def test_truncated_jpeg_reported(tmp_path):
    Image.fromarray(_gradient(200, 200)).save(tmp_path / "full.jpg")
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(StylecastError, match="cut.jpg"):
        load_image(tmp_path / "cut.jpg")


def test_decompression_bomb_refused_unless_allowed(tmp_path, monkeypatch):
    Image.fromarray(_gradient(100, 100)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(StylecastError, match="--allow-huge"):
        load_image(tmp_path / "big.png")
    assert load_image(tmp_path / "big.png", allow_huge=True).rgb.shape == (100, 100, 3)


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    def explode(path):
        path.write_bytes(b"partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(tmp_path / "out.png", explode)
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_creates_the_temporary_file_only_inside_its_cleanup(tmp_path):
    """A Ctrl-C the instant the temporary file appears still removes it (the batch SIGINT test once found a
    ``.part`` left when the file was created before the guarded block began)."""
    def interrupted(path):
        assert not path.exists() and list(tmp_path.iterdir()) == []  # nothing on disk until write() makes it
        path.write_bytes(b"partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(tmp_path / "out.png", interrupted)
    assert list(tmp_path.iterdir()) == []


def test_resize_never_upscales():
    rgb = _gradient(20, 30)
    assert resize_max_side(rgb, 100) is rgb
    assert resize_max_side(rgb, 15).shape == (10, 15, 3)


def _heic(tmp_path, name="phone.heic"):
    pillow_heif = pytest.importorskip("pillow_heif")
    pillow_heif.register_heif_opener()
    Image.fromarray(_gradient()).save(tmp_path / name, format="HEIF", quality=95)
    return tmp_path / name


def test_heic_reads_and_is_seen_by_content(tmp_path):
    """A phone's HEIC reads like any photo, also when renamed .jpg or uploaded without a name."""
    path = _heic(tmp_path)
    assert load_image(path).rgb.shape == (20, 30, 3) and load_image(path).format == "HEIF"
    renamed = tmp_path / "renamed.jpg"
    renamed.write_bytes(path.read_bytes())
    assert is_heif(renamed.read_bytes()[:12]) and load_image(renamed).rgb.shape == (20, 30, 3)


def test_heic_without_plugin_says_how_to_install(tmp_path, monkeypatch):
    path = tmp_path / "phone.heic"
    path.write_bytes(b"\x00\x00\x00\x18ftypheic" + b"\x00" * 32)
    monkeypatch.setitem(sys.modules, "pillow_heif", None)  # as if not installed
    enable_heif.cache_clear()
    try:
        with pytest.raises(StylecastError, match=r"phone\.heic: .*pip install pillow-heif"):
            load_image(path)
    finally:
        enable_heif.cache_clear()


def test_upload_decoding_limits_and_encoding():
    """What a server does with bytes: a pixel limit read from the header (TooLarge), and the same encoder."""
    png = encode_image(_gradient(), None, "PNG")
    with pytest.raises(TooLarge, match="upload: 30x20 is above the limit of 100 pixels; ask less"):
        decode_image(io.BytesIO(png), "upload", max_pixels=100, huge_hint="ask less")
    decoded = decode_image(io.BytesIO(png), "upload", max_pixels=600)
    assert decoded.format == "PNG" and (decoded.rgb == _gradient()).all()
