"""A folder of hostile (and good) media, generated rather than committed, with what each must do.

Used by the end-to-end test and by `make hostile` (``python -m stylecast.benchmarks.media.hostile DIR``). Every case
says whether `stylecast stylize` must stylize it or report it, and a phrase its report contains.
"""

from __future__ import annotations

import importlib.util
import io
import os
import struct
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from stylecast.benchmarks.media.synthetic import moving_frames, write_video


@dataclass
class Case:
    name: str  # path relative to the folder
    ok: bool  # must be stylized (True) or reported as failed (False)
    expect: str = ""  # for failures, a phrase the one-line report contains


def _gradient(h: int = 30, w: int = 40) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // max(1, w - 1), y * 255 // max(1, h - 1), (x + y) % 256], -1).astype(np.uint8)


def _encoded(img: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _png_with_size(width: int, height: int) -> bytes:
    """A real PNG whose IHDR claims another size (CRC fixed): what a decompression bomb looks like."""
    data = bytearray(_encoded(Image.fromarray(_gradient(8, 8)), "PNG"))
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF)
    return bytes(data)


def _exif_jpeg(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return _encoded(Image.fromarray(_gradient(30, 40)), "JPEG", exif=exif)


def _good_images(root: Path) -> list[Case]:
    rgb = Image.fromarray(_gradient())
    files = {
        "plain.jpg": _encoded(rgb, "JPEG"),
        "plain.png": _encoded(rgb, "PNG"),
        "upper-case.JPG": _encoded(rgb, "JPEG"),
        "png-data-named.jpg": _encoded(rgb, "PNG"),
        "trailing-garbage.jpg": _encoded(rgb, "JPEG") + b"\x00garbage after the end marker" * 10,
        "cmyk.jpg": _encoded(rgb.convert("CMYK"), "JPEG"),
        "cmyk.tif": _encoded(rgb.convert("CMYK"), "TIFF"),
        "grey16.png": _encoded(Image.fromarray(_gradient()[..., 0].astype(np.uint16) * 257), "PNG"),
        "grey16.tif": _encoded(Image.fromarray(_gradient()[..., 1].astype(np.uint16) * 257), "TIFF"),
        "float.tif": _encoded(Image.fromarray(_gradient()[..., 0].astype(np.float32) / 255.0), "TIFF"),
        "palette.png": _encoded(rgb.convert("P"), "PNG"),
        "palette-transparent.png": _encoded(rgb.convert("P"), "PNG", transparency=0),
        "rgba.png": _encoded(Image.fromarray(np.dstack([_gradient(), np.full((30, 40), 128, np.uint8)])), "PNG"),
        "la.png": _encoded(rgb.convert("LA"), "PNG"),
        "rgba.webp": _encoded(rgb.convert("RGBA"), "WEBP", lossless=True),
        "bilevel.png": _encoded(rgb.convert("1"), "PNG"),
        "grey.jpg": _encoded(rgb.convert("L"), "JPEG"),
        "animated.gif": _encoded(rgb, "GIF", save_all=True, append_images=[rgb.rotate(90), rgb.rotate(180)]),
        "animated-apng.png": _encoded(rgb, "PNG", save_all=True, append_images=[rgb.rotate(180)]),
        "exif-bogus.jpg": _exif_jpeg(9),
        "tiny-1x1.png": _encoded(Image.new("RGB", (1, 1), "red"), "PNG"),
        "tiny-2x3.png": _encoded(Image.new("RGB", (2, 3), "blue"), "PNG"),
        "odd-33x17.png": _encoded(Image.fromarray(_gradient(17, 33)), "PNG"),
        "strip-2400x24.png": _encoded(Image.fromarray(_gradient(24, 2400)), "PNG"),  # above the auto-tiling side
        "folder.jpg/nested.png": _encoded(rgb, "PNG"),  # a folder named like an image is searched, not read
    }
    files |= {f"exif-{n}.jpg": _exif_jpeg(n) for n in range(1, 9)}
    if importlib.util.find_spec("pillow_heif"):  # HEIC, as phones take them (the [serve] and [dev] extras)
        import pillow_heif

        pillow_heif.register_heif_opener()
        files["phone.heic"] = _encoded(rgb, "HEIF", quality=90)
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    (root / "link-to-plain.jpg").symlink_to("plain.jpg")
    cases = [Case(name, True) for name in [*files, "link-to-plain.jpg"]]
    unreadable = root / "unreadable.jpg"
    unreadable.write_bytes(files["plain.jpg"])
    unreadable.chmod(0)
    # root reads files whatever their mode: there the file is simply stylized.
    cases.append(Case("unreadable.jpg", os.geteuid() == 0 if hasattr(os, "geteuid") else False, "permission denied"))
    return cases


def _bad_files(root: Path) -> list[Case]:
    jpeg = _encoded(Image.fromarray(_gradient(200, 200)), "JPEG")
    png = _encoded(Image.fromarray(_gradient(200, 200)), "PNG")
    gif = bytearray(_encoded(Image.fromarray(_gradient(8, 8)), "GIF"))
    gif[6:10] = struct.pack("<HH", 65535, 65535)
    files = {
        "empty.jpg": (b"", "not an image"),
        "empty.png": (b"", "not an image"),
        "truncated.jpg": (jpeg[: len(jpeg) // 2], "damaged image"),
        "truncated.png": (png[: len(png) // 2], "damaged image"),
        "header-only.jpg": (jpeg[:20], "not an image"),
        "text.jpg": (b"this is a note, not a photo\n" * 5, "not an image"),
        "page.png": (b"<!DOCTYPE html><html><body>404 Not Found</body></html>\n", "not an image"),
        "drawing.png": (b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>', "not an image"),
        "document.jpg": (b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj <<>> endobj\n", "not an image"),
        "noise.bmp": (np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes(), "not an image"),
        "bomb.png": (_png_with_size(30000, 30000), "--allow-huge"),
        # An `ftyp heic` header and nothing a decoder can use: once skipped silently, now reported by name.
        "bad.heic": (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x5a" * 64, "bad.heic"),
        "bomb-warning.png": (_png_with_size(10000, 10000), "--allow-huge"),
        "bomb.gif": (bytes(gif), "--allow-huge"),
        "empty.mp4": (b"", "not a video"),
        "text.mkv": (b"not a matroska file at all\n" * 20, "not a video"),
    }
    for name, (data, _) in files.items():
        (root / name).write_bytes(data)
    (root / "broken-link.jpg").symlink_to("missing-target.jpg")
    (root / "loop-a.png").symlink_to("loop-b.png")
    (root / "loop-b.png").symlink_to("loop-a.png")
    os.mkfifo(root / "fifo.png")
    return [Case(name, False, expect) for name, (_, expect) in files.items()] + [
        Case("broken-link.jpg", False, "broken symbolic link"),
        Case("loop-a.png", False, "broken symbolic link"),
        Case("loop-b.png", False, "broken symbolic link"),
        Case("fifo.png", False, "not a regular file"),
    ]


def make_hostile(root: Path, video: bool = True) -> list[Case]:
    """Fill ``root`` (created) with 40+ hostile files plus good ones; return what each must do."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    cases = _good_images(root) + _bad_files(root)
    if video:
        clip = root / "clip.mp4"
        write_video(clip, moving_frames(12), fps=12)
        data = clip.read_bytes()
        (root / "truncated.mp4").write_bytes(data[: len(data) // 3])
        cases += [Case("clip.mp4", True), Case("truncated.mp4", False, "")]
    return cases


if __name__ == "__main__":
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "artifacts/hostile")
    made = make_hostile(folder)
    print(f"{folder}: {sum(c.ok for c in made)} good and {sum(not c.ok for c in made)} hostile files")
