"""Image reading and writing that copes with what users really have, and never loses data.

Reading normalises every Pillow mode to 8-bit RGB (plus the alpha channel, kept aside so it can
be re-attached), applies the EXIF orientation, and turns every failure into a one-line
:class:`StylecastError` naming the file. Writing goes to a temporary file that is renamed into
place, so an interrupted run never leaves a half-written image.
"""

from __future__ import annotations

import functools
import io
import os
import secrets
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from stylecast.runtime.errors import StylecastError, TooLarge, import_optional

# Phone photos (HEIC) are read through the optional pillow-heif plugin, registered on first need.
HEIF_SUFFIXES = {".heic", ".heif"}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".ppm", ".pgm", *HEIF_SUFFIXES}
# ISO-BMFF brands of HEIF stills (bytes 8-12, after the `ftyp` box name): a renamed or uploaded HEIC is seen too.
_HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"}
_SAVE_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP", ".bmp": "BMP",
                 ".tif": "TIFF", ".tiff": "TIFF"}
WRITABLE_FORMATS = frozenset(_SAVE_FORMATS.values())
HUGE_HINT = "pass --allow-huge if you trust this file"
# What a server decodes from the network (Pillow's format names; pillow-heif registers "HEIF", phone JPEGs with a
# depth map open as JPEG too). Every other decoder Pillow has (EPS through Ghostscript, PSD, FITS...) is attack
# surface a photo service does not need.
UPLOAD_FORMATS = ("JPEG", "PNG", "WEBP", "HEIF", "BMP", "TIFF", "GIF")
UPLOAD_FORMAT_NAMES = "JPEG, PNG, WebP, HEIC/HEIF, BMP, TIFF or GIF"
# The largest side each format can store: WebP's header has 14-bit sizes, JPEG's 16-bit ones.
MAX_SIDES = {"WEBP": 16383, "JPEG": 65535}


@dataclass
class LoadedImage:
    rgb: np.ndarray  # HxWx3 uint8
    alpha: np.ndarray | None  # HxW uint8, or None when the image had no transparency
    note: str = ""  # what was done that the user may want to know (e.g. first GIF frame)
    format: str | None = None  # Pillow's name of the source format ("JPEG", "PNG", "HEIF"...)


class Unencodable(StylecastError):
    """An output the asked format cannot store (a side above :data:`MAX_SIDES`): known before any work is done."""


def _to_8bit(img: Image.Image) -> Image.Image:
    """16-bit and float greyscale modes -> L, by scaling their real range, not by clipping.

    The arithmetic is done in place at 32 bits (integers for 16-bit data, where it is exact): a 25 MP scan costs
    about 100 MB on top of its pixels instead of the ~1 GB float64 temporaries would.
    """
    if img.mode.startswith("I;16"):
        wide = np.asarray(img).astype(np.uint32)
        wide *= 255
        wide += 32767  # round half up: v * 255 / 65535 + 0.5, floored
        wide //= 65535
        return Image.fromarray(wide.astype(np.uint8), "L")
    if img.mode in ("I", "F"):
        values = np.asarray(img).astype(np.float32)
        values *= 255.0 / (65535.0 if values.max() > 255 else 255.0)
        values += 0.5
        np.clip(values, 0, 255, out=values)
        return Image.fromarray(values.astype(np.uint8), "L")
    return img


def _refused(head: bytes, formats: tuple[str, ...]) -> str | None:
    """The format Pillow would read ``head`` as, when no format in ``formats`` claims it: judged by each format's
    own signature check alone, so no refused decoder ever parses the data."""
    Image.init()
    claims = [fmt for fmt in Image.ID if Image.OPEN[fmt][1] is not None and Image.OPEN[fmt][1](head)]
    return None if set(claims) & set(formats) else next(iter(claims), None)


def refuse_special(path: Path) -> None:
    """Broken links and pipes, sockets or devices are reported up front: opening a pipe would hang."""
    if path.is_symlink() and not path.exists():
        raise StylecastError(f"{path}: broken symbolic link (its target is missing or loops); fix or remove the link")
    if path.exists() and not path.is_file() and not path.is_dir():
        raise StylecastError(f"{path}: not a regular file (a pipe, socket or device); give a media file")


def is_heif(head: bytes, suffix: str = "") -> bool:
    """A HEIF/HEIC still, by suffix or by the file's first 12 bytes."""
    return suffix.lower() in HEIF_SUFFIXES or (head[4:8] == b"ftyp" and head[8:12] in _HEIF_BRANDS)


@functools.cache
def enable_heif() -> None:
    """Register pillow-heif's opener with Pillow once; without the plugin, say how to install it."""
    plugin = import_optional("pillow_heif", "HEIC/HEIF photos need the pillow-heif plugin: pip install pillow-heif "
                                            "(or 'stylecast[serve]')")
    plugin.register_heif_opener()


def _head(source: Path | BinaryIO) -> bytes:
    """The first 16 bytes: what Pillow's signature checks look at."""
    if isinstance(source, Path):
        with open(source, "rb") as handle:
            return handle.read(16)
    head = source.read(16)
    source.seek(0)
    return head


def load_image(path: Path, allow_huge: bool = False) -> LoadedImage:
    """Decode ``path`` to RGB uint8 with its orientation applied; raise StylecastError on any fault.

    Every format Pillow reads is accepted: the user chose this file on their own machine (PPM from a scanner,
    a PSD from an editor), unlike an upload from a stranger.
    """
    path = Path(path)
    refuse_special(path)
    return decode_image(path, str(path), allow_huge=allow_huge, formats=None)


def decode_image(source: Path | BinaryIO, name: str, allow_huge: bool = False, max_pixels: int | None = None,
                 huge_hint: str = HUGE_HINT, formats: tuple[str, ...] | None = UPLOAD_FORMATS) -> LoadedImage:
    """Decode a file or an in-memory upload (``name`` stands for it in messages) like :func:`load_image`.

    ``max_pixels`` refuses larger images from their header, before any pixel is decoded (a server's limit);
    it and Pillow's decompression-bomb limit raise :class:`TooLarge`, ending with ``huge_hint``. Only
    ``formats`` are decoded (by default :data:`UPLOAD_FORMATS`, so a new network caller is safe as written;
    ``None``: all of Pillow's).
    """
    note = ""
    try:
        head = _head(source)
        if is_heif(head, source.suffix if isinstance(source, Path) else ""):
            try:
                enable_heif()
            except StylecastError as exc:
                raise StylecastError(f"{name}: {exc}") from exc
        if formats is not None and (refused := _refused(head, formats)):
            raise StylecastError(f"{name}: {refused} images are not accepted; send {UPLOAD_FORMAT_NAMES}")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # Pillow's notes on odd metadata; real faults raise
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            previous = Image.MAX_IMAGE_PIXELS
            if allow_huge:
                Image.MAX_IMAGE_PIXELS = None
            try:
                # A format whose plugin is not registered (HEIF without pillow-heif) cannot be asked for.
                known = None if formats is None else [fmt for fmt in formats if fmt in Image.OPEN]
                with Image.open(source, formats=known) as img:
                    source_format = img.format
                    if max_pixels and img.width * img.height > max_pixels:
                        raise TooLarge(f"{name}: {img.width}x{img.height} is above the limit of {max_pixels} "
                                       f"pixels; {huge_hint}")
                    if getattr(img, "n_frames", 1) > 1:
                        note = f"animated ({img.n_frames} frames): used the first frame"
                        img.seek(0)
                    img.load()
                    img = ImageOps.exif_transpose(img) or img
            finally:
                Image.MAX_IMAGE_PIXELS = previous
    except StylecastError:
        raise
    except FileNotFoundError as exc:
        raise StylecastError(f"{name}: no such file") from exc
    except IsADirectoryError as exc:
        raise StylecastError(f"{name}: is a directory, not an image") from exc
    except PermissionError as exc:
        raise StylecastError(f"{name}: permission denied; check the file's permissions") from exc
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise TooLarge(f"{name}: larger than Pillow's decompression-bomb limit; {huge_hint}") from exc
    except UnidentifiedImageError as exc:
        accepted = "" if formats is None else f"; send {UPLOAD_FORMAT_NAMES}"
        raise StylecastError(f"{name}: not an image Pillow can read (empty, corrupt or another format){accepted}") \
            from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise StylecastError(f"{name}: damaged image ({exc}); re-export or re-download it") from exc
    except MemoryError as exc:
        raise TooLarge(f"{name}: too large to decode in this machine's memory; use a smaller image") from exc
    except Exception as exc:  # a decoder tripping over malformed data (struct, index, type errors...)
        raise StylecastError(f"{name}: damaged image ({type(exc).__name__}: {exc}); re-export or re-download it") from exc

    img = _to_8bit(img)
    alpha = None
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        alpha = np.asarray(img.getchannel("A"), dtype=np.uint8).copy()
    rgb = np.asarray(img.convert("RGB"), dtype=np.uint8).copy()
    if rgb.size == 0:
        raise StylecastError(f"{name}: image has no pixels")
    return LoadedImage(rgb, alpha, note, source_format)


# The one resize family: every stage resizes through these, so a photo is resampled the same way in
# training, export parity, evaluation, Gatys and the runtime.


def resize_to(rgb: np.ndarray, width: int, height: int,
              resample: Image.Resampling = Image.Resampling.LANCZOS) -> np.ndarray:
    """Exactly ``width`` x ``height`` (Lanczos by default: sharp, no ringing to speak of on photos)."""
    if rgb.shape[:2] == (height, width):
        return rgb
    return np.asarray(Image.fromarray(rgb).resize((width, height), resample))


def resize_long_side(rgb: np.ndarray, side: int) -> np.ndarray:
    """Up or down so the long side is ``side``, keeping the aspect ratio."""
    h, w = rgb.shape[:2]
    scale = side / max(h, w)
    return resize_to(rgb, max(1, round(w * scale)), max(1, round(h * scale)))


def resize_max_side(rgb: np.ndarray, max_side: int | None) -> np.ndarray:
    """Down only, so the long side is at most ``max_side`` (``None``: unchanged)."""
    if not max_side or max(rgb.shape[:2]) <= max_side:
        return rgb
    return resize_long_side(rgb, max_side)


def fit(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    """Centre-crop to the target aspect, then resize (bicubic): real content at exactly (height, width)."""
    h, w = rgb.shape[:2]
    scale = min(h / height, w / width)
    ch, cw = round(height * scale), round(width * scale)
    top, left = (h - ch) // 2, (w - cw) // 2
    return resize_to(rgb[top:top + ch, left:left + cw], width, height, Image.Resampling.BICUBIC)


def atomic_write(dest: Path, write) -> None:  # noqa: ANN001 - write(path) callback
    """Run ``write(tmp_path)`` then rename over ``dest``: readers never see a partial file.

    The temporary name is chosen before the file exists, so a Ctrl-C at any point (even the instant it is
    created) lands inside the ``try`` that removes it: no ``.part`` file is ever left behind.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.{secrets.token_hex(8)}.part"
    try:
        write(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def save_image(dest: Path, rgb: np.ndarray, alpha: np.ndarray | None = None, quality: int = 95) -> None:
    """Write RGB (+alpha where the format keeps it) atomically; the format follows the suffix."""
    dest = Path(dest)
    fmt = _SAVE_FORMATS.get(dest.suffix.lower())
    if fmt is None:
        raise StylecastError(f"{dest}: unsupported output type; use one of {sorted(_SAVE_FORMATS)}")
    try:
        atomic_write(dest, lambda tmp: write_image(tmp, rgb, alpha, fmt, quality))
    except OSError as exc:
        raise write_error(dest, exc) from exc


def check_encodable(width: int, height: int, fmt: str, hint: str = "save it as .png") -> None:
    """Refuse an output ``fmt`` cannot store before the work that would produce it, not after (Pillow's own
    refusal comes only once the image is encoded, as an opaque encoder error)."""
    limit = MAX_SIDES.get(fmt)
    if limit is not None and max(width, height) > limit:
        raise Unencodable(f"{width}x{height} is too large for {fmt}, which stores at most {limit} pixels a side; "
                          f"{hint}")


def encode_image(rgb: np.ndarray, alpha: np.ndarray | None, fmt: str, quality: int = 95) -> bytes:
    """The bytes :func:`save_image` would write in Pillow format ``fmt`` (one of WRITABLE_FORMATS)."""
    buffer = io.BytesIO()
    write_image(buffer, rgb, alpha, fmt, quality)
    return buffer.getvalue()


def write_image(target: Path | BinaryIO, rgb: np.ndarray, alpha: np.ndarray | None, fmt: str, quality: int) -> None:
    """Alpha is re-attached where the format keeps it (PNG, WebP, TIFF); quality applies to JPEG and WebP."""
    check_encodable(rgb.shape[1], rgb.shape[0], fmt)
    img = Image.fromarray(rgb, "RGB")
    if alpha is not None and fmt in ("PNG", "WEBP", "TIFF"):
        img.putalpha(Image.fromarray(alpha, "L"))
    options = {"quality": quality} if fmt in ("JPEG", "WEBP") else {}
    img.save(target, format=fmt, **options)


def writable_folder(folder: Path, option: str) -> Path:
    """``folder``, created if needed, once a file has been written there: a one-line error naming ``option`` now,
    rather than an OSError traceback after minutes of work (an engine build)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise StylecastError(f"{folder}: cannot write there ({exc.strerror or exc}); choose another {option}") from exc
    return folder


def write_error(dest: Path, exc: OSError) -> StylecastError:
    """The one-line message for an output that could not be written, naming the likely fix."""
    if isinstance(exc, IsADirectoryError) or Path(dest).is_dir():
        return StylecastError(f"{dest}: is a folder; remove it or choose another --out")
    if isinstance(exc, PermissionError):
        return StylecastError(f"{dest}: cannot write here (permission denied); choose another --out")
    return StylecastError(f"{dest}: could not write ({exc.strerror or exc}); free space or choose another --out")
