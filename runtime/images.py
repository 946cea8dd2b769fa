"""Image reading and writing that copes with what users really have, and never loses data.

Reading normalises every Pillow mode to 8-bit RGB (plus the alpha channel, kept aside so it can
be re-attached), applies the EXIF orientation, and turns every failure into a one-line
:class:`StylecastError` naming the file. Writing goes to a temporary file that is renamed into
place, so an interrupted run never leaves a half-written image.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from stylecast.runtime.errors import StylecastError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".ppm", ".pgm"}
_SAVE_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP", ".bmp": "BMP",
                 ".tif": "TIFF", ".tiff": "TIFF"}


@dataclass
class LoadedImage:
    rgb: np.ndarray  # HxWx3 uint8
    alpha: np.ndarray | None  # HxW uint8, or None when the image had no transparency
    note: str = ""  # what was done that the user may want to know (e.g. first GIF frame)


def _to_8bit(img: Image.Image) -> Image.Image:
    """16-bit and float greyscale modes -> L, by scaling their real range, not by clipping."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        return Image.fromarray(np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    return img


def refuse_special(path: Path) -> None:
    """Broken links and pipes, sockets or devices are reported up front: opening a pipe would hang."""
    if path.is_symlink() and not path.exists():
        raise StylecastError(f"{path}: broken symbolic link (its target is missing or loops); fix or remove the link")
    if path.exists() and not path.is_file() and not path.is_dir():
        raise StylecastError(f"{path}: not a regular file (a pipe, socket or device); give a media file")


def load_image(path: Path, allow_huge: bool = False) -> LoadedImage:
    """Decode ``path`` to RGB uint8 with its orientation applied; raise StylecastError on any fault."""
    path = Path(path)
    note = ""
    refuse_special(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # Pillow's notes on odd metadata; real faults raise
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            previous = Image.MAX_IMAGE_PIXELS
            if allow_huge:
                Image.MAX_IMAGE_PIXELS = None
            try:
                with Image.open(path) as img:
                    if getattr(img, "n_frames", 1) > 1:
                        note = f"animated ({img.n_frames} frames): used the first frame"
                        img.seek(0)
                    img.load()
                    img = ImageOps.exif_transpose(img) or img
            finally:
                Image.MAX_IMAGE_PIXELS = previous
    except FileNotFoundError as exc:
        raise StylecastError(f"{path}: no such file") from exc
    except IsADirectoryError as exc:
        raise StylecastError(f"{path}: is a directory, not an image") from exc
    except PermissionError as exc:
        raise StylecastError(f"{path}: permission denied; check the file's permissions") from exc
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise StylecastError(f"{path}: larger than Pillow's decompression-bomb limit; "
                             "pass --allow-huge if you trust this file") from exc
    except UnidentifiedImageError as exc:
        raise StylecastError(f"{path}: not an image Pillow can read (empty, corrupt or another format)") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise StylecastError(f"{path}: damaged image ({exc}); re-export or re-download it") from exc
    except MemoryError as exc:
        raise StylecastError(f"{path}: too large to decode in this machine's memory; use a smaller image") from exc
    except Exception as exc:  # a decoder tripping over malformed data (struct, index, type errors...)
        raise StylecastError(f"{path}: damaged image ({type(exc).__name__}: {exc}); re-export or re-download it") from exc

    img = _to_8bit(img)
    alpha = None
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        alpha = np.asarray(img.getchannel("A"), dtype=np.uint8).copy()
    rgb = np.asarray(img.convert("RGB"), dtype=np.uint8).copy()
    if rgb.size == 0:
        raise StylecastError(f"{path}: image has no pixels")
    return LoadedImage(rgb, alpha, note)


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
    """Run ``write(tmp_path)`` then rename over ``dest``: readers never see a partial file."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_image(dest: Path, rgb: np.ndarray, alpha: np.ndarray | None = None, quality: int = 95) -> None:
    """Write RGB (+alpha where the format keeps it) atomically; the format follows the suffix."""
    dest = Path(dest)
    fmt = _SAVE_FORMATS.get(dest.suffix.lower())
    if fmt is None:
        raise StylecastError(f"{dest}: unsupported output type; use one of {sorted(_SAVE_FORMATS)}")
    img = Image.fromarray(rgb, "RGB")
    if alpha is not None and fmt in ("PNG", "WEBP", "TIFF"):
        img.putalpha(Image.fromarray(alpha, "L"))
    options = {"quality": quality} if fmt in ("JPEG", "WEBP") else {}
    try:
        atomic_write(dest, lambda tmp: img.save(tmp, format=fmt, **options))
    except OSError as exc:
        raise write_error(dest, exc) from exc


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
