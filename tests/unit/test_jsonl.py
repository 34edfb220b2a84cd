"""The one JSON Lines reader (schemas/jsonl.py) and the readers that use it.

Every text below holds a raw U+2028 (LINE SEPARATOR), which `json.dumps(ensure_ascii=False)`
writes as is and `str.splitlines()` used to cut a line at, so a labels file, a seed file, an
input dataset or a lane journal failed as "not JSON" (or lost its decisions).
"""

from __future__ import annotations

import json
import re

import pytest

from filters.quality_classifier import LabelError, Labelled, read_labelled
from pipelines.errors import InputError
from pipelines.generators.generation import RecordedFailure
from pipelines.recipes.self_instruct.seeds import read_seed_tasks
from pipelines.transforms.bootstrap_loop import DecidedPrompt
from pipelines.transforms.dataset_input import iter_rows
from pipelines.transforms.lane_journal import LaneJournal
from schemas.jsonl import JsonLinesError, iter_json_lines, read_json_lines, split_lines

SEP = "\u2028"
ODD_BREAKS = "a\u2028b\u2029c\x85d\x0be\x0cf\x1cg\x1dh\x1ei"


def _write(path, *objects):
    path.write_text("".join(json.dumps(o, ensure_ascii=False) + "\n" for o in objects),
                    encoding="utf-8")
    return path


def test_lines_end_at_newline_only(tmp_path):
    path = _write(tmp_path / "x.jsonl", {"t": ODD_BREAKS}, {"t": "two"})
    assert list(read_json_lines(path)) == [(1, {"t": ODD_BREAKS}), (2, {"t": "two"})]


@pytest.mark.parametrize(("raw", "message"), [
    (b'{"a": 1}\n\n{"a": \n', "x.jsonl:3: malformed JSON"),
    (b'{"a": 1}\n[1, 2]\n', "x.jsonl:2: expected a JSON object, got list"),
    (b'{"a": 1}\n\xff\n', "x.jsonl:2: not valid UTF-8 (byte 0)"),
    (b"[" * 100000 + b"\n", "x.jsonl:1: malformed JSON"),
])
def test_errors_name_file_and_line(tmp_path, raw, message):
    path = tmp_path / "x.jsonl"
    path.write_bytes(raw)
    with pytest.raises(JsonLinesError, match=re.escape(message)):
        list(read_json_lines(path))
    with pytest.raises(InputError, match=re.escape(message)):  # the caller's own error type
        list(iter_json_lines(raw.split(b"\n"), str(path), InputError))


def test_a_missing_file_is_one_error(tmp_path):
    with pytest.raises(JsonLinesError, match="nope.jsonl: cannot read"):
        list(read_json_lines(tmp_path / "nope.jsonl"))


def test_labels_and_review_verdicts_with_a_line_separator_train(tmp_path):
    path = _write(tmp_path / "labels.jsonl",
                  {"instruction": f"I{SEP}x", "output": "O", "label": 1},
                  {"id": "r1", "verdict": "bad", "instruction": "J", "output": f"P{SEP}q"})
    assert read_labelled(path) == [Labelled(f"I{SEP}x", "", "O", 1),
                                   Labelled("J", "", f"P{SEP}q", 0)]
    path.write_text(path.read_text(encoding="utf-8") + "{oops\n", encoding="utf-8")
    with pytest.raises(LabelError, match="labels.jsonl:3: malformed JSON"):
        read_labelled(path)


def test_seed_tasks_with_a_line_separator_load(tmp_path):
    seed = {"id": "s1", "name": "n", "instruction": f"Say hi.{SEP}Politely.",
            "instances": [{"input": "", "output": f"Hi{SEP}there"}], "is_classification": False}
    tasks = read_seed_tasks(str(_write(tmp_path / "seeds.jsonl", seed)))
    assert tasks[0].instruction == f"Say hi.{SEP}Politely."


def test_input_rows_with_a_line_separator_read(tmp_path):
    path = _write(tmp_path / "rows.jsonl", {"instruction": f"a{SEP}b"}, {"instruction": "c"})
    assert [n for n, _ in iter_rows(str(path))] == [1, 2]


def test_a_lane_journal_keeps_decisions_whose_text_holds_a_line_separator(tmp_path):
    journal = LaneJournal(str(tmp_path), "lane")
    failure = RecordedFailure("unparsable_response", f"raw answer: a{SEP}b", 1)
    decided = [DecidedPrompt("k0", 2), DecidedPrompt("k1", 0, failure), DecidedPrompt("k2", 1)]
    for i, d in enumerate(decided):
        journal.record(i, d)
    journal.flush()
    assert LaneJournal(str(tmp_path), "lane").entries == decided


def test_a_torn_last_line_of_a_log_is_set_aside_when_the_caller_asks(tmp_path):
    """For append-only logs (review verdicts): a crash mid-write leaves a last line without
    its newline; the caller may ask for it to be set aside and said, not fatal."""
    path = tmp_path / "verdicts.jsonl"
    path.write_bytes(b'{"id": "a"}\n{"id": "b", "verd')
    torn: list[str] = []
    assert list(read_json_lines(path, torn=torn)) == [(1, {"id": "a"})]
    assert len(torn) == 1 and "verdicts.jsonl:2: malformed JSON" in torn[0]
    with pytest.raises(JsonLinesError, match="verdicts.jsonl:2"):  # not asked: an error
        list(read_json_lines(path))
    path.write_bytes(b'{"id": "a", "v\n{"id": "b"}')  # a bad line inside is never torn
    with pytest.raises(JsonLinesError, match="verdicts.jsonl:1"):
        list(read_json_lines(path, torn=[]))


def test_text_in_memory_splits_like_a_file():
    data = '{"a": "x\u2028y"}\n{"b": 1'
    assert split_lines(data) == ['{"a": "x\u2028y"}\n', '{"b": 1']
    torn: list[str] = []
    assert list(iter_json_lines(split_lines(data.encode()), "m", torn=torn)) == [
        (1, {"a": "x\u2028y"})]
    assert torn and torn[0].startswith("m:2:")
