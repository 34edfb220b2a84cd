"""Tables for the Self-Instruct instruction and instance rules (reason codes, paper order)."""

from __future__ import annotations

import re

import pytest

from filters.rouge import tokenize
from filters.self_instruct import (
    PAPER_BLACKLIST,
    InstructionRules,
    check_instruction,
    normalize_instruction,
    parse_instances,
    parse_instruction_response,
    parse_is_classification,
)
from filters.verdict import Verdict
from schemas import Reason

RULES = InstructionRules()


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("Explain the rules of chess briefly.", None),
        ("Sort three numbers.", Reason.TOO_SHORT),  # 3 words: the paper keeps only > 3
        ("Sort these four numbers.", None),
        (" ".join(["word"] * 151), Reason.TOO_LONG),
        (" ".join(["word"] * 150), None),
        ("Describe the image shown below in detail.", Reason.BLACKLISTED_KEYWORD),
        ("Summarize the attached FILES for me please.", Reason.BLACKLISTED_KEYWORD),
        ("Explain how to go to the station from here.", Reason.BLACKLISTED_KEYWORD),
        ("Explain how mapping functions work in Python.", None),  # whole words only
        ("Write a program that adds two numbers.", Reason.STARTS_WITH_WRITE_A_PROGRAM),
        ("Write A Program that adds two numbers.", Reason.STARTS_WITH_WRITE_A_PROGRAM),
        ("Write a programme review in three lines.", Reason.STARTS_WITH_WRITE_A_PROGRAM),
        ("\"Quote\" the famous line from the movie.", Reason.STARTS_WITH_PUNCTUATION),
        ("Écris une phrase sur la mer aujourd'hui.", Reason.STARTS_WITH_NON_ASCII),
        ("", Reason.EMPTY_INSTRUCTION),
    ],
)
def test_instruction_rules(text: str, reason: Reason | None) -> None:
    verdict = check_instruction(text, RULES)
    assert verdict.reason == reason
    assert verdict.keep is (reason is None)


def test_blacklist_before_prefix_rule() -> None:
    # Paper order: the keyword rule decides before the "Write a program" rule.
    verdict = check_instruction("Write a program to plot the sales data.", RULES)
    assert verdict.reason == Reason.BLACKLISTED_KEYWORD
    assert verdict.detail == "plot"


@pytest.mark.parametrize(
    ("mode", "expected"),
    [("paper", "Use sql in python to list rows"),
     ("first_letter", "Use SQL in Python to list rows"),
     ("none", "use SQL in Python to list rows")],
)
def test_capitalize_modes(mode: str, expected: str) -> None:
    assert normalize_instruction("  use SQL   in Python\nto list rows ", mode) == expected


def test_truncated_response_yields_nothing_kept() -> None:
    parsed = parse_instruction_response(
        " Explain the water cycle to a child.\n10. Describe a sunset in four lines.",
        "length", RULES)
    assert [p.verdict.reason for p in parsed] == [Reason.RESPONSE_TRUNCATED] * 2
    assert not any(p.verdict.keep for p in parsed)


def test_numbered_continuation_is_split() -> None:
    parsed = parse_instruction_response(
        " Explain the water cycle to a child.\n10. Describe a sunset in four lines.\n11 . Sing",
        "stop", RULES)
    assert [p.text for p in parsed] == ["Explain the water cycle to a child.",
                                        "Describe a sunset in four lines.", "Sing"]
    assert [p.verdict.keep for p in parsed] == [True, True, False]


def test_empty_response_is_one_rejection() -> None:
    parsed = parse_instruction_response("   ", "stop", RULES)
    assert len(parsed) == 1 and parsed[0].verdict.reason == Reason.EMPTY_RESPONSE


@pytest.mark.parametrize(("answer", "expected"),
                         [(" Yes", True), ("yes", True), ("YES\n", True), (" No", False),
                          ("", False), ("Yes, it is", False), ("y", False)])
def test_clf_answer(answer: str, expected: bool) -> None:
    assert parse_is_classification(answer) is expected


def _reasons(parsed):
    return [p.verdict.reason for p in parsed]


def test_generation_instances_examples() -> None:
    raw = ("Example 1\nInput: 2 + 2\nOutput: 4\nExample 2\nInput: 3 + 3\nOutput: 6\n"
           "Example 3\nInput: 5 + 5\nOutput: 10")
    parsed = parse_instances(raw, "stop", is_classification=False)
    assert [(p.input, p.output) for p in parsed] == [("2 + 2", "4"), ("3 + 3", "6"),
                                                     ("5 + 5", "10")]
    assert _reasons(parsed) == [None, None, None]


def test_generation_instance_without_input() -> None:
    parsed = parse_instances("Output: Paris is the capital.", "stop", is_classification=False)
    assert [(p.input, p.output) for p in parsed] == [("", "Paris is the capital.")]


def test_length_stop_drops_last_instance() -> None:
    raw = "Example 1\nInput: a b\nOutput: c d\nExample 2\nInput: e f\nOutput: g h"
    parsed = parse_instances(raw, "length", is_classification=False)
    assert _reasons(parsed) == [None, Reason.LAST_INSTANCE_TRUNCATED]


@pytest.mark.parametrize(
    ("raw", "reason"),
    [("Example 1\nInput: same\nOutput: same", Reason.INPUT_EQUALS_OUTPUT),
     ("Example 1\nInput: text\nOutput:", Reason.EMPTY_OUTPUT),
     ("Example 1\nInput: Sentence:\nOutput: fine", Reason.FIELD_ENDS_WITH_COLON),
     ("Example 1\nInput: words\nOutput: ends with:", Reason.FIELD_ENDS_WITH_COLON)],
)
def test_invalid_instances(raw: str, reason: Reason) -> None:
    assert _reasons(parse_instances(raw, "stop", is_classification=False)) == [reason]


def test_conflicting_outputs_drop_the_whole_task() -> None:
    raw = ("Example 1\nInput: x\nOutput: one\nExample 2\nInput: x\nOutput: two\n"
           "Example 3\nInput: y\nOutput: three")
    assert _reasons(parse_instances(raw, "stop", is_classification=False)) == [
        Reason.CONFLICTING_OUTPUTS] * 3


def test_empty_inputs_never_conflict() -> None:
    raw = "Example 1\nOutput: one\nExample 2\nOutput: two"
    assert _reasons(parse_instances(raw, "stop", is_classification=False)) == [None, None]


def test_duplicates_and_instance_limit_are_deterministic() -> None:
    raw = "".join(f"Example {i}\nInput: q{i}\nOutput: a{i}\n" for i in range(1, 8))
    raw += "Example 8\nInput: q1\nOutput: a1\n"
    first = parse_instances(raw, "stop", is_classification=False, max_instances=5, rng_seed=3)
    again = parse_instances(raw, "stop", is_classification=False, max_instances=5, rng_seed=3)
    assert first == again
    reasons = _reasons(first)
    assert reasons[-1] == Reason.DUPLICATE_INSTANCE
    assert reasons.count(None) == 5
    assert reasons.count(Reason.OVER_INSTANCE_LIMIT) == 2


def test_classification_instances() -> None:
    raw = ("Class label: Positive\nReview: Loved every minute.\n"
           "Class label: Negative\nReview: Dull and slow.\nClass label: Neutral")
    parsed = parse_instances(raw, "stop", is_classification=True)
    assert [(p.input, p.output) for p in parsed] == [
        ("Review: Loved every minute.", "Positive"), ("Review: Dull and slow.", "Negative"),
        ("", "Neutral")]


def test_classification_without_labels_has_no_instances() -> None:
    assert parse_instances("Positive and negative.", "stop", is_classification=True) == []


# --- capitalize: first_letter keeps the text's case but decides exactly like the paper ------

def _parsed(completion: str, mode: str):
    return parse_instruction_response(completion, "stop", InstructionRules(capitalize=mode))


def test_first_letter_decides_like_str_capitalize_on_dotted_capital_i() -> None:
    # str.capitalize() turns "FİLES" into "fi̇les": "i" + U+0307, not the word "files", so the
    # paper keeps this instruction; the regex's own case folding maps "İ" to "i" and would
    # find "files" in the text as we store it.
    text = " Show me the FİLES in this folder now"
    paper, ours = _parsed(text, "paper")[0], _parsed(text, "first_letter")[0]
    assert paper.text == "Show me the fi\u0307les in this folder now"
    assert len(paper.text) == len(ours.text) + 1  # one code point more in the paper's text
    assert ours.text == "Show me the FİLES in this folder now"
    assert paper.verdict == ours.verdict == Verdict.ok(8)
    # Novelty sees the same tokens too (rouge-score lower-cases before tokenizing).
    assert tokenize(paper.text) == tokenize(ours.text) == (
        "show", "me", "the", "fi", "les", "in", "this", "folder", "now")


def _case_sensitive_chars() -> list[str]:
    """Every code point whose case mapping or regex case folding touches an ASCII letter."""
    chars = []
    for code in range(0x110000):
        c = chr(code)
        if 0xD800 <= code < 0xE000 or c.isascii():
            continue
        mapped = c.lower() + c.upper() + c.title()
        if any(a.isascii() and a.isalpha() for a in mapped) or re.fullmatch(
                "[a-z]", c, re.IGNORECASE):
            chars.append(c)
    return chars


def test_first_letter_and_paper_decide_alike_for_every_case_mapping_that_reaches_ascii() -> None:
    chars = _case_sensitive_chars()
    assert {"İ", "ı", "\u212a", "ſ", "ﬁ"} <= set(chars)
    texts = []
    for c in chars:
        texts.append(f" {c}xplain the rules of chess")  # first-character rules
        for word in PAPER_BLACKLIST:
            for j in range(len(word)):
                spelled = word[:j] + c + word[j + 1:]
                texts.append(f" Please explain the {spelled} here now")
                texts.append(f" Please explain the {spelled.upper()} here now")
    for text in texts:
        paper, ours, raw = (_parsed(text, m)[0] for m in ("paper", "first_letter", "none"))
        assert paper.verdict == ours.verdict == raw.verdict, text
        assert tokenize(paper.text) == tokenize(ours.text), text


def test_empty_rule_position_is_a_parameter():
    """Self-Instruct drops an empty piece before any rule; Explore-Instruct's order (no empty
    rule of its own) lets the length rule decide first and guards the first-character rules."""
    assert check_instruction("", RULES).reason == Reason.EMPTY_INSTRUCTION
    later = InstructionRules(empty_first=False)
    assert check_instruction("", later) == Verdict.drop(Reason.TOO_SHORT, "0 words < 4", 0)
    no_length = InstructionRules(min_words=0, empty_first=False)
    assert check_instruction("", no_length) == Verdict.drop(Reason.EMPTY_INSTRUCTION)
