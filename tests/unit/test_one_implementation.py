"""Logic a review found written twice lives in one place (issue 14, item 4): these checks
fail when a second copy comes back."""

from __future__ import annotations

import re

from conftest import ROOT

PIPELINES = ROOT / "pipelines"


def _sources() -> dict[str, str]:
    return {str(path.relative_to(PIPELINES)): path.read_text(encoding="utf-8")
            for path in sorted(PIPELINES.rglob("*.py"))}


def test_counters_are_made_in_one_function():
    makers = [name for name, text in _sources().items() if "Metrics.counter(" in text]
    assert makers == ["generators/handler.py"], makers


def test_sampling_json_is_written_in_one_function():
    # the sampling a row records must be byte-identical wherever it is stamped
    pattern = re.compile(r"json\.dumps\([^)]*sampling")
    writers = [name for name, text in _sources().items() if pattern.search(text)]
    assert writers == ["transforms/provenance.py"], writers


def test_no_private_copies_of_shared_helpers():
    names = re.compile(r"^(?:class (?:RoutePayload|Routed)\b|def (?:_pool_order|_one_key|_count|"
                       r"_metric)\b)", re.MULTILINE)
    copies = {name: names.findall(text) for name, text in _sources().items()
              if names.search(text) and name != "transforms/route.py"}
    assert copies == {}, copies
    assert "def generate(stage" not in "".join(
        text for name, text in _sources().items() if name.startswith("recipes/"))


def test_json_lines_are_read_in_one_module():
    """JSON Lines are read by schemas/jsonl.py only (issue 24): a reader that splits with
    `splitlines()` cuts texts holding U+2028, one that loops `json.loads` over lines has its
    own error wording. review.py is its engineer's to move onto the shared reader."""
    pattern = re.compile(r"splitlines\(\)[^\n]*\n?[^\n]*json\.loads|json\.loads\(line")
    packages = [ROOT / name for name in ("pipelines", "filters", "schemas")]
    readers = sorted(str(path.relative_to(ROOT)) for package in packages
                     for path in package.rglob("*.py")
                     if pattern.search(path.read_text(encoding="utf-8"))
                     and path != ROOT / "schemas" / "jsonl.py")
    assert readers in ([], ["pipelines/outputs/review.py"]), readers
