"""MkDocs hook: let mkdocstrings find `stylecast.runtime`.

The distribution maps each top-level folder to a subpackage (`runtime/` is `stylecast.runtime`, `package-dir` in
pyproject.toml), so no `stylecast/` folder exists for griffe to read. At start-up, before mkdocstrings reads its
search paths (a hook's on_config would run after it, too late on a fresh clone), this makes one
under build/docs-api (git-ignored): `stylecast/runtime` pointing at `runtime/`, which mkdocs.yml gives the Python
handler as its search path. The folder of the `mkdocs` script (first on sys.path) also holds the `stylecast`
console script, which griffe would read as a second part of the package, so it leaves sys.path.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TREE = ROOT / "build" / "docs-api" / "stylecast"
PACKAGES = ["runtime"]


def on_startup(command: str, dirty: bool) -> None:
    sys.path[:] = [entry for entry in sys.path if not (Path(entry or ".") / "stylecast").is_file()]
    TREE.mkdir(parents=True, exist_ok=True)
    for name in PACKAGES:
        link = TREE / name
        if link.is_symlink() or link.is_file():
            link.unlink()
        elif link.is_dir():
            shutil.rmtree(link)
        try:
            link.symlink_to(ROOT / name, target_is_directory=True)
        except OSError:  # no symlinks here (some Windows setups): a copy reads the same
            shutil.copytree(ROOT / name, link)

