"""The docs a user reads: a short README whose first commands and links are true, pages that speak to users (no
issue numbers, commit hashes or session notes), the marker blocks the commands rewrite, and a site that builds."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.M | re.S)
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
# "issue 14", "issue #14", "PR #3", "pull request 12", or a bare "#14" in prose (not an HTML entity, not a URL anchor).
ISSUE = re.compile(r"\b(?:issues?|PRs?|pull requests?)\s*#?\d+|(?<![\w&/#(])#\d+\b", re.I)
# A commit hash as prose names one: 7-40 hex characters standing alone, with a digit and a letter. Runs of hex inside
# longer words, file names (`gate-707400d1.md`: a machine class) or longer digests (a sha256) do not count.
HEX_WORD = re.compile(r"(?<![\w./:-])[0-9a-f]{7,40}(?![\w./-])")


def user_pages() -> list[Path]:
    """README.md and the hand-written pages (docs/examples/ holds command outputs, not prose)."""
    return [README, *sorted(p for p in DOCS.rglob("*.md") if "examples" not in p.relative_to(DOCS).parts)]


def commit_like(text: str) -> list[str]:
    return [word for word in HEX_WORD.findall(text) if re.search(r"\d", word) and re.search(r"[a-f]", word)]


def test_readme_is_short():
    lines = README.read_text().splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines; move the detail to a page in docs/"


def test_readme_starts_with_the_two_commands():
    first = FENCE.search(README.read_text())
    assert first, "README.md has no code block"
    commands = [line.split("#")[0].strip() for line in first.group(1).splitlines() if line.strip()]
    assert commands[:2] == ["make demo", "make test"], commands
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^demo:", makefile, re.M) and re.search(r"^test:", makefile, re.M)


def test_readme_links_point_at_files():
    missing = []
    for target in LINK.findall(README.read_text()):
        if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue
        path = target.split("#", 1)[0]
        if path and not (ROOT / path).exists():
            missing.append(target)
    assert not missing, f"README.md links to files that do not exist: {missing}"


@pytest.mark.parametrize("page", user_pages(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_pages_name_no_issue_commit_or_session(page):
    text = page.read_text()
    assert not ISSUE.findall(text), f"{page.name} names issues: {ISSUE.findall(text)}"
    assert not commit_like(text), f"{page.name} names commits: {commit_like(text)}"
    assert "this session" not in text.lower(), f"{page.name} says 'this session'"


def test_commit_pattern():
    """The check finds hashes in prose and leaves digests, file names and ordinary words alone."""
    assert commit_like("the model of commit 10bd70f, or `git show ac3b888:models/x`") == ["10bd70f", "ac3b888"]
    sha256 = "69801f226e2b4d57357e169be81e0721429f6caa1598b1daff063c84c4bf1d5c"
    assert not commit_like(f"sha256 {sha256}, gate-707400d1.md, 1080p, 1.6e10, fp16, avx512f, 20000 steps")
    assert ISSUE.findall("as issue 14 asks, and #35") == ["issue 14", "#35"]
    assert not ISSUE.findall("&#123; [x](page.md#anchor) # a heading")


@pytest.mark.parametrize("path, marker", [("README.md", "styles"), ("docs/benchmarks.md", "bench-results"),
                                          ("docs/quality.md", "recipe-ab-wave")])
def test_marker_blocks_are_where_the_commands_write(path, marker):
    text = (ROOT / path).read_text()
    start, end = f"<!-- {marker}:start -->", f"<!-- {marker}:end -->"
    assert text.count(start) == 1 and text.count(end) == 1 and text.index(start) < text.index(end)
    makefile = (ROOT / "Makefile").read_text()
    if marker == "bench-results":
        assert f"bench --readme {path}" in makefile
    if marker.startswith("recipe-ab"):
        assert re.search(rf"^RECIPE_README \?= {re.escape(path)}$", makefile, re.M)


@pytest.mark.slow
def test_site_builds_strict(tmp_path):
    if importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("mkdocs_gen_files") is None:
        pytest.skip("mkdocs is not installed here: pip install -e '.[docs]'")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1", "DISABLE_MKDOCS_2_WARNING": "true"}
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=ROOT, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    assert (tmp_path / "site" / "reference" / "cli" / "index.html").is_file()
    assert "stylecast stylize" in (tmp_path / "site" / "reference" / "cli" / "index.html").read_text()
    assert (tmp_path / "site" / "results" / "quality" / "index.html").is_file()
