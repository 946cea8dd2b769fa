"""mkdocs-gen-files: copy the repository's images that the pages show into the built site.

MkDocs only serves files inside docs/, and the images live where the commands write them (models/, styles/,
benchmarks/results/). They are copied at build time under their repository paths, so a page at the top of docs/
links `models/wave.gallery.jpg` exactly as the README does, and nothing binary is committed twice.
"""

from __future__ import annotations

from pathlib import Path

import mkdocs_gen_files

ROOT = Path(__file__).resolve().parent.parent
PATTERNS = [
    "models/*.gallery.jpg",
    "models/*.loss.png",
    "styles/*.jpg",
    "benchmarks/results/**/*.png",
    "benchmarks/results/**/*.jpg",
]


def assets() -> list[Path]:
    found = set()
    for pattern in PATTERNS:
        for path in ROOT.glob(pattern):
            # The Gatys reference images are git-ignored working files, not results.
            if path.is_file() and "gatys-reference" not in path.parts:
                found.add(path)
    return sorted(found)


for source in assets():
    with mkdocs_gen_files.open(source.relative_to(ROOT).as_posix(), "wb") as target:
        target.write(source.read_bytes())
