"""A real browser for the tests: Debian's headless Chromium driven by Selenium.

The browser and its driver are the system's (`/usr/bin/chromium`, `/usr/bin/chromedriver`, from
the `chromium` and `chromium-driver` packages that `.ci/run` installs): both paths are given to
Selenium, and Selenium Manager (which would download a browser or a driver) is pointed at a file
that does not exist, so nothing is ever fetched at run time.

`Browser` keeps a screenshot of every page it visits under the test's directory and prints its
path, so a failed test's captured output lists them (see `browser_session`).
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
# Selenium Manager runs only when no driver path is given; this makes it fail loudly instead of
# downloading anything if that ever changes.
NO_SELENIUM_MANAGER = "/nonexistent/selenium-manager"


def missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    for binary, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not binary.is_file():
            return f"{binary} is missing: apt-get install {package}"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed: pip install -e '.[test]'"
    return None


class Browser:
    """One headless Chromium window; `get` opens a path of `base_url` and keeps a screenshot."""

    def __init__(self, base_url: str, shots: Path) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        os.environ["SE_MANAGER_PATH"] = NO_SELENIUM_MANAGER
        os.environ["SE_OFFLINE"] = "true"
        options = webdriver.ChromeOptions()
        options.binary_location = str(CHROMIUM)
        for argument in (
            "--headless=new",
            "--no-sandbox",
            "--disable-dev-shm-usage",
            "--disable-gpu",
            "--window-size=1400,1000",
            "--no-first-run",
            "--disable-extensions",
        ):
            options.add_argument(argument)
        service = Service(executable_path=str(CHROMEDRIVER))
        self.driver = webdriver.Chrome(service=service, options=options)
        self.base_url = base_url.rstrip("/")
        self.shots = shots
        self.shots.mkdir(parents=True, exist_ok=True)
        self.taken: list[Path] = []

    def get(self, path: str) -> None:
        self.driver.get(self.base_url + path)
        self.screenshot()

    def screenshot(self, label: str | None = None) -> Path:
        """A PNG of the page as it is now, named after its order and its path."""
        if label is None:
            label = self.driver.current_url.removeprefix(self.base_url)
        name = re.sub(r"[^A-Za-z0-9]+", "-", label).strip("-") or "root"
        path = self.shots / f"{len(self.taken) + 1:02d}-{name[:60]}.png"
        self.driver.save_screenshot(str(path))
        self.taken.append(path)
        print(f"screenshot: {path}")
        return path

    @property
    def text(self) -> str:
        """What the page shows, as text."""
        from selenium.webdriver.common.by import By

        return str(self.driver.find_element(By.TAG_NAME, "body").text)

    @property
    def source(self) -> str:
        return str(self.driver.page_source)

    def click_link(self, text: str) -> None:
        from selenium.webdriver.common.by import By

        self.driver.find_element(By.LINK_TEXT, text).click()
        self.screenshot()

    def fill(self, name: str, value: str) -> None:
        from selenium.webdriver.common.by import By

        field = self.driver.find_element(By.NAME, name)
        field.clear()
        field.send_keys(value)

    def submit(self, css: str = "[type=submit]") -> None:
        from selenium.webdriver.common.by import By

        self.driver.find_element(By.CSS_SELECTOR, css).click()
        self.screenshot()

    def login(self, username: str, password: str, path: str = "/admin/login/") -> None:
        self.get(path)
        self.fill("username", username)
        self.fill("password", password)
        self.submit()

    def quit(self) -> None:
        self.driver.quit()


@contextlib.contextmanager
def browser_session(base_url: str, shots: Path) -> Iterator[Browser]:
    """A Browser for one test, used as `with browser_session(url, tmp_path / "shots") as b:`.
    Every screenshot's path is printed as it is taken, so a failed test's captured output lists
    them all; a failure inside the block takes one more of the page it failed on."""
    reason = missing()
    if reason is not None:
        pytest.fail(f"the browser tests need Debian's Chromium: {reason}")
    browser = Browser(base_url, shots)
    try:
        yield browser
    except BaseException:
        with contextlib.suppress(Exception):
            browser.screenshot("at-failure")
        raise
    finally:
        browser.quit()
