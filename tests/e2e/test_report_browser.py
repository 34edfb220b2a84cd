"""report.html in a real headless Chromium (Debian's `chromium` + `chromium-driver`, installed
by .ci/browser-deps.sh): the page requests nothing but itself, logs no console error, and every
chart draws marks with a real size. Skipped where the browser is missing, except under CI."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import skip_or_fail
from report_fakes import EXPECTED_CHARTS, write_fake_run

from pipelines.outputs.report_html import write_report

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync")

# Per chart: its title and how many marks have a non-empty bounding box.
CHART_MARKS_JS = """
return Array.from(document.querySelectorAll('svg.chart')).map(function (svg) {
  var n = 0;
  svg.querySelectorAll('rect:not(.legend), path, circle').forEach(function (m) {
    var b = m.getBBox();
    if (b.width > 0 && b.height > 0) { n += 1; }
  });
  var box = svg.getBoundingClientRect();
  return [svg.querySelector('title').textContent, n, box.width, box.height];
});
"""


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
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
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.add_argument("--window-size=1200,900")
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


def _open(driver, path: Path) -> tuple[list[dict], list[str]]:
    """Load the page; return its console entries and the URLs of the requests made for it.

    The browser's own start page may still log a chrome:// request in the same window, so
    requests are attributed by `documentURL`; none may leave the machine whatever made it."""
    import json

    driver.get_log("performance")  # drop what an earlier page left
    driver.get_log("browser")
    driver.get(path.as_uri())
    requests = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] != "Network.requestWillBeSent":
            continue
        url = message["params"]["request"]["url"]
        assert not url.startswith(("http:", "https:", "ws:", "wss:", "ftp:")), url
        if message["params"].get("documentURL") == path.as_uri():
            requests.append(url)
    return driver.get_log("browser"), requests


@pytest.fixture(scope="module")
def full_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run")
    return write_report(out, write_fake_run(out))


def test_page_is_offline_quiet_and_draws_every_chart(browser, full_report):
    console, requests = _open(browser, full_report)
    assert [e for e in console if e["level"] == "SEVERE"] == []
    assert requests == [full_report.as_uri()]
    charts = browser.execute_script(CHART_MARKS_JS)
    assert sorted(c[0] for c in charts) == sorted(EXPECTED_CHARTS)
    for title, marks, width, height in charts:
        assert marks >= 1 and width > 100 and height > 20, (title, marks, width, height)
    assert "alert" not in (browser.execute_script("return typeof window.pwned") or "")


def test_page_fits_a_phone_width(browser, full_report):
    browser.set_window_size(420, 900)
    try:
        _open(browser, full_report)
        overflow = browser.execute_script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 1
    finally:
        browser.set_window_size(1200, 900)


def test_empty_run_page_has_notes_and_no_errors(browser, tmp_path):
    manifest = {"recipe": "filter", "generator": None, "stages": {}, "rows": {"data": 0},
                "accounting": [], "run": {}}
    path = write_report(tmp_path, manifest)
    console, requests = _open(browser, path)
    assert [e for e in console if e["level"] == "SEVERE"] == []
    assert requests == [path.as_uri()]
    assert browser.execute_script("return document.querySelectorAll('svg.chart').length") == 0
    assert browser.execute_script("return document.querySelectorAll('.nodata').length") >= 5


def test_chromium_is_debians(browser):
    """The binaries the Makefile installs, not a downloaded browser build."""
    assert shutil.which("chromium") == CHROMIUM
    assert browser.capabilities["browserName"] in ("chrome", "chromium")
