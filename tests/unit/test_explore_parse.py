"""Explore-Instruct answer parsing and per-example rules (reference §3.5): every piece of an
answer comes back with a verdict, malformed text never raises."""

from __future__ import annotations

import pytest

from filters.explore_parse import (
    ALPACA_BLACKLIST,
    BRAINSTORM_BLACKLIST,
    DOMAINS,
    check_example,
    parse_enrich_response,
    parse_extend_response,
)
from filters.self_instruct import check_instruction
from filters.verdict import Verdict
from schemas import Reason
from schemas.tree import Example

REWRITE, BRAIN, MATH = DOMAINS["rewrite"], DOMAINS["brainstorming"], DOMAINS["math"]

EXTEND = """New subtask: Formal paraphrase
Reason: Some readers expect a formal register.
Examples:
###
1. Instruction: Rewrite this sentence in a formal tone.
Input: hey, what's up with the report?
Output: Could you tell me the status of the report?
###
2. Instruction: Make the note below sound more formal.
Input: <noinput>
Output: Dear colleagues, please find the note attached.
###
New subtask: Sentence shortening
Reason: Short sentences read faster.
Example:
###
1. Instruction: Shorten this sentence without losing meaning.
Input: Due to the fact that it rained, the game was called off.
Output: Because it rained, the game was cancelled.
###"""


def test_extend_blocks_names_reasons_and_examples():
    subs = parse_extend_response(EXTEND, "stop", REWRITE)
    assert [s.name for s in subs] == ["Formal paraphrase", "Sentence shortening"]
    assert subs[0].reason == "Some readers expect a formal register."
    assert all(s.verdict.keep for s in subs)
    first = subs[0].examples
    assert [e.example.instruction for e in first] == [
        "Rewrite this sentence in a formal tone.", "Make the note below sound more formal."]
    assert first[1].example.input == ""  # <noinput> becomes empty
    assert subs[1].examples[0].verdict.keep  # "Example:" is read as "Examples:"
    assert [e.position for s in subs for e in s.examples] == [0, 1, 2]


def test_cut_answer_loses_its_last_example():
    subs = parse_extend_response(EXTEND, "length", REWRITE)
    assert subs[-1].examples[-1].verdict.reason == Reason.LAST_INSTANCE_TRUNCATED
    assert subs[0].examples[-1].verdict.keep


@pytest.mark.parametrize("text", ["", "   ", "I cannot help with that.", "Reason: x\nExamples:",
                                  "###\n###", "New subtask"])
def test_no_block_means_nothing_parsed(text):
    assert parse_extend_response(text, "stop", REWRITE) == []


def test_block_without_reason_is_rejected_alone():
    text = ("New subtask: A task\nExamples:\n1. Instruction: Fix the grammar here.\nInput: x\n"
            "Output: y\nNew subtask: Tone shift\nReason: r\nExamples:\n1. Instruction: Change "
            "the tone of this.\nInput: a\nOutput: b")
    subs = parse_extend_response(text, "stop", REWRITE)
    assert [s.verdict.reason for s in subs] == [Reason.INCOMPLETE_SUBTASK, None]
    assert subs[1].examples[0].example == Example("Change the tone of this.", "a", "b")


def test_name_without_letters_is_invalid():
    subs = parse_extend_response("New subtask: ***\nReason: r\nExamples:\n", "stop", REWRITE)
    assert subs[0].verdict.reason == Reason.INVALID_TASK_NAME
    sentence = "The task is to improve the way you use your own voice " * 3
    subs = parse_extend_response(f"New subtask: {sentence}\nReason: r\nExamples:\n", None,
                                 REWRITE)
    assert subs[0].verdict.reason == Reason.INVALID_TASK_NAME  # too long for a name


def test_enrich_strips_an_examples_prefix_not_a_character_set():
    # The paper's lstrip("Examples:") would also eat the "Ex" of "Expand".
    text = "Examples:\nExpand: no\n###\n1. Instruction: Expand the note into a paragraph.\n" \
           "Input: Meeting at 5.\nOutput: We will meet at five o'clock."
    parsed = parse_enrich_response(text, "stop", REWRITE)
    assert [p.verdict.reason for p in parsed] == [None]
    assert parsed[0].example.instruction == "Expand the note into a paragraph."


def test_numbered_items_without_fields_are_prose_but_broken_items_are_malformed():
    assert parse_enrich_response("Here you go: great examples.", "stop", REWRITE) == []
    text = "Sure!\n1. Instruction: Fix the grammar please.\nOutput: done\n2. Instruction: " \
           "Shorten the text below.\nInput: a long text\nOutput: short"
    parsed = parse_enrich_response(text, "stop", REWRITE)
    assert [p.verdict.reason for p in parsed] == [Reason.MALFORMED_EXAMPLE, None]


def test_unnumbered_domains_split_on_instruction():
    text = "Instruction: Name three uses of a brick.\nInput: <noinput>\nOutput: Wall, doorstop," \
           " weight.\n###\nInstruction: List ideas for a party.\nInput: a birthday\nOutput: Games."
    parsed = parse_enrich_response(text, None, BRAIN)
    assert [p.example.instruction for p in parsed] == ["Name three uses of a brick.",
                                                      "List ideas for a party."]
    assert all(p.verdict.keep for p in parsed)


@pytest.mark.parametrize(("instruction", "inp", "reason"), [
    ("Fix it", "", Reason.TOO_SHORT),
    (" ".join(["word"] * 151), "", Reason.TOO_LONG),
    ("Draw the logo in a new style.", "", Reason.BLACKLISTED_KEYWORD),
    ("Describe this diagram in words.", "", Reason.BLACKLISTED_KEYWORD),
    ("Write a program that sorts words.", "", Reason.STARTS_WITH_WRITE_A_PROGRAM),
    ("- list three synonyms of happy", "", Reason.STARTS_WITH_PUNCTUATION),
    ("Ünderline the nouns in this.", "", Reason.STARTS_WITH_NON_ASCII),
    ("Rewrite the sentence more clearly.", "<sentence>", Reason.WRAPPED_INPUT),
    ("Rewrite the sentence more clearly.", "(your text)", Reason.WRAPPED_INPUT),
])
def test_rules_in_paper_order(instruction, inp, reason):
    _, verdict = check_example(Example(instruction, inp, "out"), REWRITE)
    assert verdict.reason == reason


def test_three_words_are_enough_and_domains_differ():
    assert check_example(Example("Fix the grammar.", "", "o"), REWRITE)[1].keep  # paper: < 3
    assert check_example(Example("Plan a map route.", "", "o"), BRAIN)[1].keep  # no map(s)
    assert not check_example(Example("Plan a map route.", "", "o"), REWRITE)[1].keep
    assert check_example(Example("Add", "", "Answer: 2"), MATH)[1].keep  # no length rule
    assert len(ALPACA_BLACKLIST) == 18 and len(BRAINSTORM_BLACKLIST) == 16


@pytest.mark.parametrize(("output", "boxed"), [
    ("Explanation: 1+1. Answer: $2$.", "Explanation: 1+1. Answer: $\\boxed{2}$."),
    ("Answer: $\\dfrac{1}{2}$", "Answer: $\\boxed{\\dfrac{1}{2}}$"),
    ("Answer: $\\boxed{3}$", "Answer: $\\boxed{3}$"),
    ("Answer: 7 apples", "Answer: 7 apples"),  # not $...$: left alone (the paper corrupted it)
    ("No answer line", "No answer line"),
])
def test_math_answers_get_boxed_only_when_shaped_like_latex(output, boxed):
    example, verdict = check_example(Example("Compute the sum.", "", output), MATH)
    assert example.output == boxed and verdict.keep


INSTRUCTIONS = ["", "  ", "Fix it", "Fix the grammar.", " ".join(["word"] * 151),
                "Draw the logo in a new style.", "Plan a map route.", "Describe this diagram.",
                "Write a program that sorts words.", "write a program that sorts words.",
                "- list three synonyms", ".", "Ünderline the nouns in this.", "İmage the FİLES now"]


@pytest.mark.parametrize("name", sorted(DOMAINS))
def test_instruction_rules_are_self_instructs_under_the_domain_rules(name):
    """Explore's instruction filters are `check_instruction` with the domain's parameters."""
    domain = DOMAINS[name]
    for instruction in INSTRUCTIONS:
        _, verdict = check_example(Example(instruction, "", "o"), domain)
        theirs = check_instruction(instruction, domain.rules)
        assert verdict == (theirs if not theirs.keep else Verdict.ok()), instruction


@pytest.mark.parametrize(("domain", "instruction", "expected"), [
    # No empty rule in the paper's code: the length rule decides first, where there is one.
    (REWRITE, "", Verdict.drop(Reason.TOO_SHORT, "0 words < 3", 0)),
    (MATH, "", Verdict.drop(Reason.EMPTY_INSTRUCTION)),
    # Rules see the raw text, not its capitalize() (Self-Instruct's): lower case passes.
    (BRAIN, "write a program that sorts words.", Verdict.ok()),
    (REWRITE, "Write a program that sorts words.",
     Verdict.drop(Reason.STARTS_WITH_WRITE_A_PROGRAM)),
    (MATH, "Fix it", Verdict.ok()),
    (BRAIN, "Fix it", Verdict.drop(Reason.TOO_SHORT, "2 words < 3", 2)),
])
def test_instruction_verdicts_keep_the_papers_order(domain, instruction, expected):
    assert check_example(Example(instruction, "", "o"), domain)[1] == expected
