"""Calibration photos for int8 exports where only the sample photos exist (a fresh clone: CI's gate, the tests).

The export excludes its parity photos from calibration by content, and a clone ships no other photos. A
three-quarter crop and a mirror of each sample photo are real photo content that is not byte-identical to
it, so the int8 export calibrates on them while parity is still measured on the untouched originals.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from stylecast.runtime.images import IMAGE_SUFFIXES, save_image


def derived_photos(photos: Path, dest: Path) -> list[Path]:
    """Write a crop and a mirror of every photo in ``photos`` into ``dest``; returns the files written."""
    sources = sorted(p for p in photos.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for path in sources:
        with Image.open(path) as opened:
            img = opened.convert("RGB")
        width, height = img.size
        for name, derived in ((f"{path.stem}-crop.png", img.crop((0, 0, width * 3 // 4, height * 3 // 4))),
                              (f"{path.stem}-mirror.png", img.transpose(Image.Transpose.FLIP_LEFT_RIGHT))):
            save_image(dest / name, np.asarray(derived))
            written.append(dest / name)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photos", type=Path, help="the sample photos (e.g. benchmarks/photos)")
    parser.add_argument("dest", type=Path, help="folder to write the crops and mirrors into")
    args = parser.parse_args()
    if not args.photos.is_dir():
        sys.exit(f"error: {args.photos}: no such folder of sample photos; pass the folder holding them "
                 "(e.g. benchmarks/photos)")
    print(f"{len(derived_photos(args.photos, args.dest))} calibration photos in {args.dest}")


if __name__ == "__main__":
    main()
