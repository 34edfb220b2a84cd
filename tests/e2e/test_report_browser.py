"""report.html in a real headless Chromium (Debian's `chromium` + `chromium-driver`, installed
by .ci/browser-deps.sh): the page requests nothing but itself, logs no console error, and every
chart draws marks with a real size. Skipped where the browser is missing, except under CI."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from browser import CHROMIUM, chromium, open_page
from report_fakes import EXPECTED_CHARTS, write_fake_run

from pipelines.outputs.report_html import write_report

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
    with chromium(tmp_path_factory.mktemp("chromium-profile")) as driver:
        yield driver


def _open(driver, path: Path) -> tuple[list[dict], list[str]]:
    return open_page(driver, path.as_uri())


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
