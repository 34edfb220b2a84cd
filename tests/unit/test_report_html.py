"""report.html from a small fake run: one chart per expected figure with marks in it, every
model text escaped, nothing that would make the page fetch anything."""

from __future__ import annotations

import json
import re
from html import escape
from html.parser import HTMLParser
from pathlib import Path

import pytest
from report_fakes import EXPECTED_CHARTS, HOSTILE, write_fake_run

from pipelines.outputs import report_data
from pipelines.outputs.report_html import render, write_report

MARKS = {"rect", "path", "circle"}


class _Page(HTMLParser):
    """Collects each <svg class="chart">: its <title> and the marks inside it; and every tag."""

    def __init__(self) -> None:
        super().__init__()
        self.charts: list[dict] = []
        self.tags: list[tuple[str, dict]] = []
        self._svg: dict | None = None
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list) -> None:
        attributes = dict(attrs)
        self.tags.append((tag, attributes))
        if tag == "svg" and attributes.get("class") == "chart":
            self._svg = {"title": "", "marks": 0, "depth": 0}
            self.charts.append(self._svg)
        elif self._svg is not None:
            self._svg["marks"] += tag in MARKS and "legend" not in attributes.get("class", "")
            self._in_title = tag == "title" and not self._svg["title"]

    def handle_endtag(self, tag: str) -> None:
        if tag == "svg":
            self._svg = None
        self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._svg is not None and self._in_title:
            self._svg["title"] += data


def _parse(html: str) -> _Page:
    page = _Page()
    page.feed(html)
    return page


@pytest.fixture
def fake_run(tmp_path: Path) -> tuple[Path, dict]:
    return tmp_path, write_fake_run(tmp_path)


def test_one_chart_per_figure_each_with_marks(fake_run):
    out, manifest = fake_run
    path = write_report(out, manifest)
    assert path == out / "report.html"
    page = _parse(path.read_text(encoding="utf-8"))
    titles = [c["title"] for c in page.charts]
    assert sorted(titles) == sorted(EXPECTED_CHARTS)
    for chart in page.charts:
        assert chart["marks"] >= 1, chart
    assert not (out / "manifest.json").exists()  # the report never writes the manifest


def test_hostile_text_is_escaped_everywhere(fake_run):
    out, manifest = fake_run
    html = render(out, manifest)
    assert "<script" not in html and "<svg onload" not in html and "</title></text>" not in html
    escaped = "&lt;script&gt;alert(&quot;pwned&quot;)&lt;/script&gt;"
    # generator name, tree node, tag label, example rows and most-similar text all show it
    assert html.count(escaped) >= 5
    assert escape(HOSTILE) in html  # whole, where the page has room for it
    page = _parse(html)
    for tag, attrs in page.tags:
        assert tag not in {"script", "img", "link", "iframe", "object", "embed"}
        assert not any(a.startswith("on") for a in attrs), (tag, attrs)


def test_no_external_references(fake_run):
    out, manifest = fake_run
    html = render(out, manifest)
    for needle in ("http://", "https://", "src=", "<link", "@import", "url("):
        assert needle not in html, needle
    assert all("href" not in attrs for _, attrs in _parse(html).tags)


def test_reads_manifest_json_when_not_given(fake_run):
    out, manifest = fake_run
    (out / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    assert write_report(out).read_text(encoding="utf-8") == render(out, manifest)


def test_empty_run_shows_notes_not_empty_charts(tmp_path):
    manifest = {"recipe": "filter", "generator": None, "stages": {}, "rows": {"data": 0},
                "accounting": [], "run": {}}
    html = render(tmp_path, manifest)
    assert 'class="chart"' not in html
    assert html.count('class="nodata"') >= 5  # funnel, reasons, novelty, three lengths
    assert "Tags" not in html and "Explore-Instruct tree" not in html


def test_header_names_the_generator_or_says_there_is_none(tmp_path, fake_run):
    out, manifest = fake_run
    meta = re.search(r'<p class="meta">(.*?)</p>', render(out, manifest)).group(1)
    assert meta.startswith(f"generator {escape(HOSTILE)} (")
    filtered = {"recipe": "filter", "generator": None, "stages": {}, "rows": {"data": 0},
                "accounting": [], "run": {"started": "2024-01-01T00:00:00Z"}}
    meta = re.search(r'<p class="meta">(.*?)</p>', render(tmp_path, filtered)).group(1)
    assert meta.startswith("no generator · started") and "generator no generator" not in meta


def test_stages_without_data_rows_skip_the_optional_sections(fake_run):
    out, manifest = fake_run
    for sub in ("nodes",):
        for f in (out / sub).iterdir():
            f.unlink()
    html = render(out, manifest)
    assert "Explore-Instruct task tree" not in html and "Tag frequency" in html


def test_rouge_bins_put_edges_in_the_upper_bin():
    counts = report_data.rouge_bins([0.0, 0.05, 0.7, 0.7499, 0.75, 1.0])
    assert counts[0] == 1 and counts[1] == 1 and counts[14] == 2 and counts[15] == 1
    assert counts[19] == 1 and sum(counts) == 6


def test_length_bins_keep_outliers_in_the_last_bin():
    counts = [3] * 100 + [8] * 100 + [5000]  # the 99th percentile is 8: the last bin is "8+"
    edges, hist, overflow = report_data.length_bins(counts)
    assert overflow and len(hist) == len(edges) - 1 == 9 and edges[-1] == 9
    assert hist[3] == 100 and hist[-1] == 101 and sum(hist) == 201


def test_large_tables_are_sampled(fake_run, monkeypatch):
    out, _ = fake_run
    monkeypatch.setattr(report_data, "MAX_ROWS", 3)
    column = report_data.read_column(out, "data", "instruction")
    assert column is not None and column.total == 8 and len(column.values) == 3


def test_tree_from_the_papers_format(tmp_path):
    from schemas.tree import Example, TaskNode
    from schemas.tree_format import dump_tree

    root = TaskNode("a", None, 0, "root", "Root", "", (), "root",
                    examples=(Example("x"), Example("y")))
    kids = [TaskNode(f"k{i}", "a", 1, f"kid_{i}", f"Kid {i}", "", (i,), f"root/kid_{i}",
                     examples=(Example("z"),)) for i in range(2)]
    grandkid = TaskNode("g", "k0", 2, "grandkid", "G", "", (0, 0), "root/kid_0/grandkid")
    (tmp_path / "tree").mkdir()
    for name, text in dump_tree([root, *kids, grandkid]).items():
        (tmp_path / "tree" / name).write_text(text, encoding="utf-8")
    rows, source, total = report_data.tree_rows(tmp_path)
    assert source == "tree" and total == 4
    assert [r.label for r in rows] == ["root", "kid_0", "grandkid", "kid_1"]  # pre-order
    assert [r.parent_index for r in rows] == [None, 0, 1, 0]
    assert [r.value for r in rows] == [2, 1, 0, 1]


def test_threshold_marker_follows_the_config(fake_run):
    out, manifest = fake_run
    assert "threshold 0.7" in render(out, manifest)
    manifest["config"] = {"filters": {"novelty": {"enabled": True, "threshold": 0.55}}}
    assert "threshold 0.55" in render(out, manifest)
    assert re.search(r'class="marker"', render(out, manifest))


def test_word_counts_count_words_not_split_pieces():
    import pyarrow as pa

    column = report_data.Column(pa.array(["", "  two words ", None, "a\tb\nc"]), 4)
    assert report_data.word_counts(column) == [0, 2, 0, 3]
