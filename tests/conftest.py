"""Shared fixtures: tiny configs that train in a second or two, and a headless Chromium for HTML checks."""

from __future__ import annotations

import importlib.util
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest

from inductionlab.config import RunConfig, validate


def tiny_config(**sections) -> RunConfig:
    raw = {
        "name": "tiny",
        "data": {"source": "dirichlet", "vocab_size": 12, "seq_len": 24, "n_triggers": 2},
        "model": {"d_model": 16, "n_layers": 2, "pos_enc": "ape", "max_len": 64},
        "train": {"batch_size": 8, "steps": 6, "eval_every": 2, "checkpoint_every": 2, "eval_batch_size": 8,
                  "device": "cpu"},
    }
    if sections.get("data", {}).get("task", "bigram-triggers") != "bigram-triggers":
        raw["data"] = {"seq_len": 24}  # another task: only the fields every task has
    for section, values in sections.items():
        if isinstance(values, dict):
            raw.setdefault(section, {}).update(values)
        else:
            raw[section] = values
    return validate(raw)


@pytest.fixture(scope="module")
def single_thread():
    """Tiny models: one intra-op thread is faster and immune to a busy machine's thread contention (a module that
    uses it: ``pytestmark = pytest.mark.usefixtures("single_thread")``)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tiny():
    return tiny_config


# ---------------------------------------------------------------------------------------------------------------------
# Headless Chromium, driven through selenium and the system chromedriver.
#
# Binaries come from the Debian packages `chromium` and `chromium-driver`; INDUCTIONLAB_CHROMIUM and
# INDUCTIONLAB_CHROMEDRIVER override the paths. The driver path is always given to selenium explicitly, so
# selenium-manager never runs and nothing is downloaded. When the browser cannot be started the tests that use
# it are skipped, unless INDUCTIONLAB_REQUIRE_BROWSER=1, in which case they fail (CI must not skip silently).
# ---------------------------------------------------------------------------------------------------------------------

CHROMIUM = Path(os.environ.get("INDUCTIONLAB_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("INDUCTIONLAB_CHROMEDRIVER", "/usr/bin/chromedriver"))
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)
WINDOW_HEIGHT = 1000

# An <img> is "nonblank" when at least NONBLANK_MIN_FRACTION of the pixels of its on-screen rendering differ from the
# rendering's most common colour by more than NONBLANK_PIXEL_DELTA in some RGB channel (values in [0, 1]; 0.1 is
# about 26 of 255 levels: well above resampling and anti-aliasing noise on a flat background, well below any visible
# mark such as a plotted line, an axis or tick text).
NONBLANK_PIXEL_DELTA = 0.1
NONBLANK_MIN_FRACTION = 0.01


@dataclass
class ImageInfo:
    alt: str
    natural_width: int
    natural_height: int
    complete: bool  # loaded and decoded (HTMLImageElement.complete with a nonzero naturalWidth)
    nonblank: bool


@dataclass
class Rendered:
    title: str
    body_text: str
    console_errors: list[str]  # browser log entries at level SEVERE, uncaught exceptions included
    images: list[ImageInfo] = field(default_factory=list)
    screenshot_png: bytes = b""  # the window (viewport) after load, scrolled to the top
    script_elements: int = 0


def png_is_nonblank(png: bytes) -> bool:
    """True when at least 1% of the pixels differ noticeably from the most common colour (see NONBLANK_*)."""
    import matplotlib.image as mpimg

    pixels = np.asarray(mpimg.imread(BytesIO(png), format="png"), dtype=np.float64)
    if pixels.ndim == 2:  # greyscale
        pixels = pixels[:, :, None]
    if pixels.shape[2] < 3:  # greyscale (+ alpha)
        pixels = np.repeat(pixels[:, :, :1], 3, axis=2)
    rgb = pixels[:, :, :3].reshape(-1, 3)  # alpha dropped: screenshots are opaque
    if rgb.size == 0:
        return False
    keys = np.round(rgb * 255).astype(np.int64) @ np.array([1, 256, 65536])
    values, counts = np.unique(keys, return_counts=True)
    mode = rgb[np.flatnonzero(keys == values[np.argmax(counts)])[0]]
    differs = np.abs(rgb - mode).max(axis=1) > NONBLANK_PIXEL_DELTA
    return bool(differs.mean() >= NONBLANK_MIN_FRACTION)


_IMAGES_READY = "return document.readyState === 'complete' && Array.from(document.images).every(i => i.complete);"
_IMAGE_FACTS = """
return Array.from(document.images).map(i => ({
    alt: i.getAttribute('alt') || '',
    natural_width: i.naturalWidth,
    natural_height: i.naturalHeight,
    complete: i.complete && i.naturalWidth > 0,
}));
"""


class Browser:
    """One Chromium session; call it with an HTML file to load it from disk and collect what a reader would see."""

    def __init__(self, driver) -> None:
        self.driver = driver
        self._width: int | None = None

    def __call__(self, path: Path, width: int = 1280) -> Rendered:
        from selenium.common.exceptions import TimeoutException, WebDriverException
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait

        driver = self.driver
        if width != self._width:
            driver.set_window_size(width, WINDOW_HEIGHT)
            self._width = width
        driver.get_log("browser")  # drop entries left over from the previous page
        driver.get(Path(path).resolve().as_uri())
        try:
            WebDriverWait(driver, 10).until(lambda d: d.execute_script(_IMAGES_READY))
        except TimeoutException:
            pass  # reported through ImageInfo.complete
        driver.execute_script("window.scrollTo(0, 0);")
        screenshot = driver.get_screenshot_as_png()

        facts = driver.execute_script(_IMAGE_FACTS)
        images = []
        for element, fact in zip(driver.find_elements(By.TAG_NAME, "img"), facts, strict=True):
            nonblank = False
            if fact["complete"]:
                try:
                    driver.execute_script("arguments[0].scrollIntoView({block: 'center', inline: 'center'});",
                                          element)
                    nonblank = png_is_nonblank(element.screenshot_as_png)
                except WebDriverException:
                    nonblank = False  # zero-sized or hidden: nothing to see
            images.append(ImageInfo(alt=fact["alt"], natural_width=int(fact["natural_width"]),
                                    natural_height=int(fact["natural_height"]), complete=bool(fact["complete"]),
                                    nonblank=nonblank))

        errors = [entry["message"] for entry in driver.get_log("browser") if entry.get("level") == "SEVERE"]
        return Rendered(
            title=driver.title,
            body_text=driver.execute_script("return document.body ? document.body.innerText : '';"),
            console_errors=errors,
            images=images,
            screenshot_png=screenshot,
            script_elements=int(driver.execute_script("return document.getElementsByTagName('script').length;")),
        )


def _browser_unavailable(reason: str):
    if os.environ.get("INDUCTIONLAB_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason} (INDUCTIONLAB_REQUIRE_BROWSER=1 forbids skipping)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def chromium() -> Iterator[Browser]:
    """Session-wide headless Chromium: `chromium(path, width=1280) -> Rendered`."""
    if importlib.util.find_spec("selenium") is None:
        _browser_unavailable("the Python package selenium is not installed (pip install -e '.[test]')")
    from selenium import webdriver
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.chrome.service import Service

    for binary in (CHROMIUM, CHROMEDRIVER):
        if not (binary.is_file() and os.access(binary, os.X_OK)):
            _browser_unavailable(f"{binary} not found or not executable (Debian packages chromium, chromium-driver)")

    with tempfile.TemporaryDirectory(prefix="inductionlab-chromium-", ignore_cleanup_errors=True) as tmp:
        options = webdriver.ChromeOptions()
        options.binary_location = str(CHROMIUM)
        for flag in CHROMIUM_FLAGS:
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={Path(tmp) / 'profile'}")
        options.add_argument(f"--window-size=1280,{WINDOW_HEIGHT}")
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        # chromedriver's and Chromium's own output goes to a file, not the test log
        service = Service(executable_path=str(CHROMEDRIVER), log_output=str(Path(tmp) / "chromedriver.log"))
        driver, failure = None, ""
        try:
            driver = webdriver.Chrome(service=service, options=options)
        except WebDriverException as err:
            failure = f"Chromium did not start: {err.msg or err}"
        if driver is None:
            _browser_unavailable(failure)
        try:
            driver.set_page_load_timeout(30)
            yield Browser(driver)
        finally:
            driver.quit()
