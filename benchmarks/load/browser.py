"""The page of `stylecast serve` in a real headless browser (Debian's chromium + chromium-driver, through
Selenium): pick the first style, upload a photo, wait for the stylized result. The browser test and the
README's screenshot (``python -m stylecast.benchmarks.load.browser MODEL PHOTO docs/serve.png``) both use it."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

CHROMIUM = ("chromium", "chromium-browser", "google-chrome")
WINDOW = (1100, 900)


def missing_browser() -> str | None:
    """Why the page cannot be driven here (None when it can)."""
    if not any(shutil.which(name) for name in CHROMIUM):
        return "no chromium here (apt-get install chromium chromium-driver)"
    if not shutil.which("chromedriver"):
        return "no chromedriver here (apt-get install chromium-driver)"
    return None


def headless_chromium():  # noqa: ANN201 - a selenium WebDriver (selenium imported lazily)
    """Debian's Chromium, headless, at the page's test window size; the caller quits it."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 f"--window-size={WINDOW[0]},{WINDOW[1]}"):
        options.add_argument(flag)
    options.binary_location = next(shutil.which(name) for name in CHROMIUM if shutil.which(name))
    return webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver")))


def stylize_in_page(url: str, photo: Path, screenshot: Path | None = None, timeout: float = 60.0) -> dict:
    """Upload ``photo`` on the page at ``url``; returns what the page shows (status, result size, download name)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = headless_chromium()
    try:
        driver.get(url)
        wait = WebDriverWait(driver, timeout)
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".style[aria-pressed='true']"))
        driver.find_element(By.ID, "file").send_keys(str(Path(photo).resolve()))
        wait.until(lambda d: d.execute_script("const r = document.getElementById('result');"
                                              "return r.complete && r.naturalWidth > 0 && r.src.startsWith('blob:');"))
        shown = {
            "status": driver.find_element(By.ID, "status").text,
            "result_width": driver.execute_script("return document.getElementById('result').naturalWidth"),
            "download": driver.find_element(By.ID, "download").get_attribute("download"),
            "errors": [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"],
        }
        if screenshot:
            Path(screenshot).parent.mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(str(screenshot))
        return shown
    finally:
        driver.quit()


def main() -> None:
    """MODEL PHOTO OUT.png: serve MODEL, stylize PHOTO on the page, save the screenshot (shrunk)."""
    from PIL import Image

    from stylecast.benchmarks.load.server import running_server

    model, photo, out = (Path(a) for a in sys.argv[1:4])
    with running_server([model]) as server:
        print(stylize_in_page(server.url, photo, out))
    Image.open(out).convert("RGB").quantize(colors=128).save(out, optimize=True)  # small enough for the repo


if __name__ == "__main__":
    main()
