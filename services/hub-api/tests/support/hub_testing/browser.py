"""A real headless browser for the web pages: Debian's Chromium driven by Selenium through chromedriver.

``browser`` (module scope: one Chromium per test module, it takes a second or two to start) yields a
:class:`Browser`; ``browser.screenshot("portal-orders")`` saves ``portal-orders.png`` in ``LETSBE_SCREENSHOTS_DIR``
(``LETSBE_SCREENSHOTS_DIR=docs/screenshots`` refreshes the documentation's pictures; unset, a folder under the system
temp directory, so a test run leaves the checkout as it was).
Selenium's calls block, so async tests run them in a thread (``await asyncio.to_thread(browser.get, url)``) while
the hub serves on the test's event loop.
"""

from __future__ import annotations

import base64
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement

from letsbe_platform.testing import eventually_blocking

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SCREENSHOTS = Path(os.environ.get("LETSBE_SCREENSHOTS_DIR") or Path(tempfile.gettempdir()) / "letsbe-screenshots")
T = TypeVar("T")


class Browser:
    def __init__(self, driver: webdriver.Chrome):
        self.driver = driver

    def get(self, url: str) -> None:
        self.driver.get(url)

    @property
    def url(self) -> str:
        return self.driver.current_url

    @property
    def text(self) -> str:
        return self.driver.find_element(By.TAG_NAME, "body").text

    def find(self, css: str) -> WebElement:
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def find_all(self, css: str) -> list[WebElement]:
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def wait_for(self, check: Callable[[], T], *, what: str, timeout: float = 30.0) -> T:
        """Poll ``check`` (in the browser's thread) until it returns something truthy."""
        last: Exception | None = None

        def attempt() -> T | None:
            nonlocal last
            try:
                return check()
            except WebDriverException as exc:  # the element is not there yet
                last = exc
                return None

        try:
            return eventually_blocking(attempt, what, timeout=timeout, every=0.1)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; page: {self.url}\n{self.text[-2000:]}") from last

    def cookies(self) -> list[dict[str, Any]]:
        return self.driver.get_cookies()

    def console_errors(self) -> list[str]:
        """Messages the page logged at SEVERE (CSP violations, script errors)."""
        return [e["message"] for e in self.driver.get_log("browser") if e.get("level") == "SEVERE"]

    def screenshot(self, name: str, *, full_page: bool = True) -> Path:
        """Save the page as ``<name>.png`` in SCREENSHOTS: the whole page (up to 4000 px high), or the window."""
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        if not full_page:
            self.driver.save_screenshot(str(path))
            return path
        size = self.driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], 4000), "scale": 1}
        shot = self.driver.execute_cdp_cmd(
            "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip}
        )
        path.write_bytes(base64.b64decode(shot["data"]))
        return path


def start_browser() -> Browser:
    if not (Path(CHROMIUM).exists() and shutil.which(CHROMEDRIVER)):
        raise RuntimeError("Chromium is missing: scripts/ensure-system-tools.sh installs chromium and chromium-driver")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,900",
        "--no-first-run",
        "--disable-extensions",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    return Browser(driver)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    b = start_browser()
    try:
        yield b
    finally:
        b.driver.quit()
