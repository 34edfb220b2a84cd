"""EcomGPT-style rule filters: normalization and reason codes."""

from __future__ import annotations

import pytest

from filters.rules import RuleConfig, check_rules, judge, normalize_whitespace
from schemas import InstructionRecord, Reason


def _rec(instruction: str = "Say hi.", inp: str = "", out: str = "Hi!") -> InstructionRecord:
    return InstructionRecord(id="x", content_hash="h", recipe="filter", stage="input", round=0,
                             instruction=instruction, input=inp, output=out)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("  a\t\tb  ", "a b"), ("a\r\nb\rc", "a\nb\nc"), ("a\n\n\n\nb", "a\n\nb"),
     ("line one   \n   line two", "line one\nline two"), ("x\u00a0y", "x y"), ("", "")],
)
def test_normalize_whitespace(text: str, expected: str) -> None:
    assert normalize_whitespace(text) == expected


@pytest.mark.parametrize(
    ("record", "cfg", "reason"),
    [(_rec(), RuleConfig(), None),
     (_rec(instruction="  "), RuleConfig(), Reason.EMPTY_INSTRUCTION),
     (_rec(out=""), RuleConfig(), Reason.EMPTY_OUTPUT),
     (_rec(out=""), RuleConfig(require_output=False), None),
     (_rec(out="x" * 100), RuleConfig(max_chars=50), Reason.OVERLONG_INSTANCE),
     (_rec(inp="buy cheap Pills now"), RuleConfig(illegal_words=("cheap pills",)),
      Reason.ILLEGAL_WORD),
     (_rec(inp="spillsover"), RuleConfig(illegal_words=("pills",)), None),  # whole words
     ],
)
def test_rules(record, cfg, reason) -> None:
    verdict = check_rules(record, cfg)
    assert verdict.reason == reason and verdict.keep is (reason is None)


def test_overlong_score_is_the_size() -> None:
    verdict = check_rules(_rec(out="x" * 100), RuleConfig(max_chars=50))
    assert verdict.score == len("Say hi.") + 100


def test_judge_stores_normalized_text() -> None:
    record, verdict = judge(_rec(instruction=" Say   hi. ", out="Hi!\n\n\n"), RuleConfig())
    assert (record.instruction, record.output) == ("Say hi.", "Hi!") and verdict.keep
