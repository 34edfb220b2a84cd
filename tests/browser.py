"""Headless Chromium for the page tests (report.html, the review page): Debian's `chromium` and
`chromium-driver` (installed by .ci/browser-deps.sh) driven by selenium, never a downloaded
browser build. Skipped where the browser is missing, except under CI."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from conftest import skip_or_fail

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync")
LOCAL = ("http://127.0.0.1:", "http://localhost:")


@contextlib.contextmanager
def chromium(profile: Path) -> Iterator[Any]:
    """A headless Chromium with performance and console logs, quit on exit."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    if missing:
        skip_or_fail(f"{' and '.join(missing)} not installed (run: bash .ci/browser-deps.sh)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        skip_or_fail("selenium is not installed (pip install -e '.[test]')")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument("--window-size=1200,900")
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


def requests_made(driver: Any, document: str, allow: tuple[str, ...] = ()) -> list[str]:
    """The URLs requested for `document` since the log was last read. No request may leave the
    machine, whatever made it: only URLs starting with an `allow` prefix (this machine's
    server) may use a network scheme.

    The browser's own start page may still log a chrome:// request in the same window, so
    requests are attributed by `documentURL`."""
    found = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] != "Network.requestWillBeSent":
            continue
        url = message["params"]["request"]["url"]
        if not url.startswith(allow):
            assert not url.startswith(("http:", "https:", "ws:", "wss:", "ftp:")), url
        if message["params"].get("documentURL") == document:
            found.append(url)
    return found


def open_page(driver: Any, url: str, allow: tuple[str, ...] = ()) -> tuple[list[dict], list[str]]:
    """Load `url`; return its console entries and the URLs of the requests made for it."""
    driver.get_log("performance")  # drop what an earlier page left
    driver.get_log("browser")
    driver.get(url)
    return driver.get_log("browser"), requests_made(driver, url, allow)


def severe(console: list[dict]) -> list[dict]:
    return [entry for entry in console if entry["level"] == "SEVERE"]
