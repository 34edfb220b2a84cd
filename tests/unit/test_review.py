"""The human review's pure parts: reading the audit sample and the verdict log, importing an
exported file, the precision estimate, and a page that shows hostile rows as text."""

from __future__ import annotations

import json
import re

import pytest
from review_fakes import HOSTILE, audit_row, small_run, write_audit

from pipelines.errors import InputError
from pipelines.outputs.review import (
    append_verdicts,
    import_verdicts,
    make_verdict,
    read_log,
    read_sample,
    read_verdicts,
    verdicts_path,
)
from pipelines.outputs.review_page import render, script_json
from pipelines.outputs.review_stats import Tally, format_review, tally, wilson_interval


def _log(run_dir, *lines: dict) -> None:
    path = verdicts_path(run_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")


def _line(i: int, verdict: str, at: str, reason: str = "", **kw: str) -> dict:
    return {"id": f"r{i:03d}", "stage": "instance_gen", "source": "self_instruct",
            "verdict": verdict, "reason": reason, "instruction": f"Instruction {i}",
            "input": "", "output": f"Output {i}", "at": at} | kw


# -- the audit sample ------------------------------------------------------------------------

def test_sample_rows_come_by_source_name_then_file_order(tmp_path):
    rows = read_sample(small_run(tmp_path))
    assert [(r.source, r.id) for r in rows] == [
        ("seed", "r004"), ("seed", "r005"), ("self_instruct", "r001"),
        ("self_instruct", "r002"), ("self_instruct", "r003")]
    assert rows[0].instruction == HOSTILE
    assert rows[0].extra == {"round": 1, "generator": "scripted", "scores": {"llm_judge": 4.5}}


def test_a_run_without_an_audit_sample_is_one_clear_error(tmp_path):
    with pytest.raises(InputError, match="no audit sample.*audit_per_source"):
        read_sample(tmp_path)


def test_a_broken_audit_line_names_file_and_line(tmp_path):
    write_audit(tmp_path, {"seed": [audit_row(1)]})
    with (tmp_path / "audit" / "seed.jsonl").open("a") as handle:
        handle.write('{"id": 7}\n')
    with pytest.raises(InputError, match=r"seed\.jsonl:2: field 'id' must be a string"):
        read_sample(tmp_path)


# -- the verdict log -------------------------------------------------------------------------

def test_the_last_line_per_id_wins_and_undone_unreviews(tmp_path):
    _log(tmp_path, _line(1, "bad", "2025-01-01T00:00:01.000Z", "off topic"),
         _line(2, "skip", "2025-01-01T00:00:02.000Z"),
         _line(1, "good", "2025-01-01T00:00:03.000Z"),
         _line(3, "bad", "2025-01-01T00:00:04.000Z"),
         _line(3, "undone", "2025-01-01T00:00:05.000Z"))
    verdicts = read_verdicts(tmp_path)
    assert {i: v.verdict for i, v in verdicts.items()} == {"r001": "good", "r002": "skip"}
    assert verdicts["r001"].reason == ""  # the later line's reason, not a merge
    assert len(read_log(verdicts_path(tmp_path))) == 5  # nothing is rewritten


def test_a_missing_log_means_nothing_reviewed(tmp_path):
    assert read_verdicts(tmp_path) == {}


@pytest.mark.parametrize(("bad_line", "message"), [
    ("{not json", r"verdicts\.jsonl:2: not JSON"),
    ('["a list"]', r"verdicts\.jsonl:2: expected a JSON object"),
    (json.dumps(_line(2, "maybe", "t")), r"verdicts\.jsonl:2: field 'verdict' must be one of"),
    (json.dumps({k: v for k, v in _line(2, "good", "t").items() if k != "source"}),
     r"verdicts\.jsonl:2: field 'source' must be a string"),
])
def test_a_malformed_log_line_names_file_and_line(tmp_path, bad_line, message):
    _log(tmp_path, _line(1, "good", "t"))
    with verdicts_path(tmp_path).open("a") as handle:
        handle.write(bad_line + "\n")
    with pytest.raises(InputError, match=message):
        read_verdicts(tmp_path)


def test_a_verdict_takes_its_texts_from_the_sample(tmp_path):
    row = read_sample(small_run(tmp_path))[0]
    line = make_verdict(row, "bad", "  broken html  ", at="2025-01-01T00:00:00.000Z")
    assert (line.instruction, line.output, line.source, line.reason) == (
        HOSTILE, HOSTILE, "seed", "broken html")
    append_verdicts(tmp_path, [line])
    assert read_verdicts(tmp_path) == {row.id: line}


# -- importing an exported file --------------------------------------------------------------

def test_import_appends_new_verdicts_once(tmp_path):
    run = small_run(tmp_path / "run")
    _log(run, _line(1, "good", "2025-01-01T00:00:01.000Z"))
    exported = tmp_path / "export.jsonl"
    exported.write_text("".join(json.dumps(x) + "\n" for x in (
        _line(1, "good", "2025-01-01T00:00:01.000Z"),  # already in the log
        _line(2, "bad", "2025-01-01T00:00:02.000Z", "wrong answer"),
        _line(3, "undone", "2025-01-01T00:00:03.000Z", stage="instruction_gen"),  # nothing to undo
    )), encoding="utf-8")
    assert import_verdicts(run, exported) == 1
    assert import_verdicts(run, exported) == 0
    assert {i: v.verdict for i, v in read_verdicts(run).items()} == {"r001": "good",
                                                                      "r002": "bad"}


def test_import_never_replaces_a_later_decision(tmp_path):
    run = small_run(tmp_path / "run")
    _log(run, _line(1, "bad", "2025-01-02T00:00:00.000Z"))
    exported = tmp_path / "export.jsonl"
    exported.write_text(json.dumps(_line(1, "good", "2025-01-01T00:00:00.000Z")) + "\n")
    assert import_verdicts(run, exported) == 0
    assert read_verdicts(run)["r001"].verdict == "bad"


@pytest.mark.parametrize(("line", "message"), [
    (_line(99, "good", "t"), r"export\.jsonl:2: id 'r099' is not in .*audit sample"),
    (_line(1, "good", "t", source="seed"), r"export\.jsonl:2: id 'r001' is stage"),
])
def test_a_bad_import_leaves_the_log_untouched(tmp_path, line, message):
    run = small_run(tmp_path / "run")
    _log(run, _line(1, "good", "t0"))
    before = verdicts_path(run).read_bytes()
    exported = tmp_path / "export.jsonl"
    exported.write_text(json.dumps(_line(2, "bad", "t1")) + "\n" + json.dumps(line) + "\n")
    with pytest.raises(InputError, match=message):
        import_verdicts(run, exported)
    assert verdicts_path(run).read_bytes() == before


# -- precision -------------------------------------------------------------------------------

# scipy.stats.binomtest(k, n).proportion_ci(method="wilson"), an independent implementation
@pytest.mark.parametrize(("good", "judged", "low", "high"), [
    (0, 10, 0.0, 0.27753279986288926),
    (5, 10, 0.236593090512564, 0.7634069094874361),
    (10, 10, 0.7224672001371109, 1.0),
    (81, 263, 0.2552885198782742, 0.36620957698280004),
    (1, 1, 0.20654931437723745, 1.0),
    (45, 50, 0.7863976856252034, 0.9565242350681095),
])
def test_wilson_interval_known_values(good, judged, low, high):
    assert wilson_interval(good, judged) == pytest.approx((low, high), abs=1e-12)


def test_wilson_interval_edges():
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


def test_precision_counts_good_and_bad_but_not_skips(tmp_path):
    _log(tmp_path, _line(1, "good", "t"), _line(2, "good", "t"), _line(3, "bad", "t"),
         _line(4, "skip", "t"), _line(5, "skip", "t", source="seed"))
    groups = tally(read_verdicts(tmp_path).values(), "source")
    assert groups == [Tally("seed", skip=1), Tally("self_instruct", good=2, bad=1, skip=1)]
    assert groups[0].precision is None and groups[1].precision == pytest.approx(2 / 3)


def test_the_inspect_section_shows_progress_and_intervals(tmp_path):
    run = small_run(tmp_path)
    sample = read_sample(run)
    assert format_review(sample, {}, "W")[1:] == [
        "  human review (W): 0 of 5 audit rows reviewed, 5 unreviewed"]
    _log(run, _line(1, "good", "t"), _line(2, "bad", "t"), _line(4, "skip", "t",
                                                                 source="seed"))
    text = "\n".join(format_review(sample, read_verdicts(run), "W"))
    assert "3 of 5 audit rows reviewed, 2 unreviewed" in text
    lo, hi = wilson_interval(1, 2)
    assert re.search(rf"self_instruct\s+1\s+1\s+0\s+0\.500  \[{lo:.3f}, {hi:.3f}\]", text), text
    assert re.search(r"seed\s+0\s+0\s+1\s+-", text), text
    assert re.search(r"by stage.*\n\s+instance_gen\s+1\s+1\s+1", text), text


# -- the page --------------------------------------------------------------------------------

def test_the_page_carries_hostile_rows_only_as_escaped_json(tmp_path):
    html = render(small_run(tmp_path / "</title><script>x"))
    # ours only: the data, one block of rows, the script
    assert html.count("<script") == 3 and html.count("</script>") == 3
    assert "<img" not in html  # the hostile tag exists only as \u003cimg inside the JSON
    assert "</title><script>x" not in html
    rows = json.loads(re.search(r'<script type="application/json" id="rows-0">(.*?)</script>',
                                html, re.S).group(1))
    assert rows[0]["instruction"] == HOSTILE and rows[0]["extra"]["scores"] == {"llm_judge": 4.5}


def test_the_page_embeds_the_verdicts_in_force(tmp_path):
    run = small_run(tmp_path)
    _log(run, _line(1, "bad", "t1", "why"), _line(2, "good", "t1"), _line(2, "undone", "t2"))
    data = re.search(r'id="review-data">(.*?)</script>', render(run), re.S).group(1)
    assert {i: v["verdict"] for i, v in json.loads(data)["verdicts"].items()} == {"r001": "bad"}


def test_script_json_cannot_close_the_script():
    text = script_json({"a": "</script><!-- & -->"})
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text) == {"a": "</script><!-- & -->"}


def test_a_log_line_stays_one_line_for_any_splitter(tmp_path):
    """json.dumps(ensure_ascii=False) leaves U+2028 raw, and str.splitlines() breaks there."""
    row = read_sample(small_run(tmp_path))[0]  # HOSTILE ends in U+2028
    append_verdicts(tmp_path, [make_verdict(row, "bad", "a\u2029b\x85c")] * 2)
    text = verdicts_path(tmp_path).read_text(encoding="utf-8")
    assert len(text.splitlines()) == 2 and "Instruction" not in text  # hostile row is r004
    assert json.loads(text.splitlines()[1])["reason"] == "a\u2029b\x85c"
    assert read_verdicts(tmp_path)[row.id].instruction == HOSTILE
