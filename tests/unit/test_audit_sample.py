"""The audit sample carries what a reviewer needs to judge a row: every turn of a dialogue,
the scores, the judge's rationale and the transform that derived it (issue 24, sections 1 and
5); the review page reads them from there."""

from __future__ import annotations

import json

from pipelines.outputs.audit import _WriteAuditFn
from pipelines.outputs.review import read_sample
from schemas import InstructionRecord
from schemas.records import Message

TURNS = tuple(Message(role, f"turn {n}") for n, role in enumerate(["user", "assistant"] * 3))


def _record(**kw: object) -> InstructionRecord:
    return InstructionRecord(id="d1", content_hash="h", recipe="ultrachat", stage="dialogue",
                             round=0, instruction="turn 0", output="turn 1", **kw)


def test_audit_rows_carry_messages_scores_and_the_transform(tmp_path):
    record = _record(messages=TURNS, scores=(("llm_judge", 4.5), ("reward", float("nan"))),
                     judge_rationale="clear and complete", transform="reversal@v1",
                     derived_from=("a", "b"), rounds=3, dialogue_end="rounds_reached")
    list(_WriteAuditFn(str(tmp_path / "audit"), 0).process(("ultrachat", [record])))
    text = (tmp_path / "audit" / "ultrachat.jsonl").read_text(encoding="utf-8")
    assert "NaN" not in text  # strict JSON: the page's JSON.parse would refuse NaN
    (row,) = read_sample(tmp_path)
    assert row.extra["messages"] == [{"role": m.role, "content": m.content} for m in TURNS]
    assert row.extra["scores"] == {"llm_judge": 4.5, "reward": "nan"}
    assert (row.extra["transform"], row.extra["derived_from"]) == ("reversal@v1", ["a", "b"])
    assert row.extra["judge_rationale"] == "clear and complete"
    assert (row.extra["rounds"], row.extra["dialogue_end"]) == (3, "rounds_reached")


def test_fields_a_recipe_leaves_empty_stay_out(tmp_path):
    list(_WriteAuditFn(str(tmp_path / "audit"), 0).process(("s", [_record()])))
    line = json.loads((tmp_path / "audit" / "s.jsonl").read_text())
    assert set(line) == {"id", "instruction", "input", "output", "stage", "round", "generator",
                         "origin"}
