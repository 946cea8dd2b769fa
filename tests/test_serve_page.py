"""The page of `stylecast serve` in headless Chromium: a style is picked, a photo uploaded, its result shown."""

from __future__ import annotations

import pytest

from stylecast.benchmarks.load.browser import missing_browser, stylize_in_page
from stylecast.benchmarks.load.server import running_server

from .conftest import DATA


@pytest.mark.skipif(missing_browser() is not None, reason=f"browser test: {missing_browser()}")
def test_page_stylizes_an_uploaded_photo(tiny_onnx, tmp_path):
    with running_server([tiny_onnx], "--styles-dir", str(DATA)) as server:
        shown = stylize_in_page(server.url, DATA / "photos" / "chelsea.jpg", tmp_path / "page.png")
    assert shown["result_width"] == 72 and shown["status"].startswith("Done: tiny_fp32")
    assert shown["download"] == "chelsea.tiny.jpg" and shown["errors"] == []
    assert (tmp_path / "page.png").stat().st_size > 0
