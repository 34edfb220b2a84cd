"""Ensemble-Instruct parsing: the valid-format filter and the instruction responses."""

from __future__ import annotations

import random

import numpy as np

from filters.ensemble_instructions import (
    legacy_argsort,
    paper_rules,
    parse_instruction_response,
    similarity_report,
)
from filters.ensemble_parse import parse_raw_instances
from schemas import Reason


def _one(raw: str, **kw):
    samples = parse_raw_instances("Do the task. |EoS|", raw, **kw)
    return samples[0], samples


def test_type_a_first_lines_only_by_default():
    s, _ = _one("input: 2, 3\nmore input\noutput: 5")
    assert not s.verdict.keep and s.verdict.reason == Reason.INVALID_FORMAT
    s, _ = _one("input: a b\noutput: first line\nsecond line\n|EoS|")
    assert s.verdict.keep and (s.kind, s.input, s.output) == ("input_output", "a b", "first line")
    assert s.instruction == "Do the task."


def test_multi_line_option_keeps_whole_fields_up_to_the_marker():
    s, _ = _one("input: 2, 3\nmore input\noutput: 5\nand six\n|EoS|\ninstruction: x",
                single_line=False)
    assert s.verdict.keep and s.input == "2, 3\nmore input" and s.output == "5\nand six"
    s, _ = _one("output:\ndef f():\n    return 1\n|EoS|", single_line=False)
    assert s.kind == "output_only" and s.output == "def f():\n    return 1"


def test_type_b_output_on_its_own_line_is_dropped_as_empty():
    s, _ = _one("output:\ndef f():\n    return 1\n|EoS|")
    assert s.kind == "output_only" and s.verdict.reason == Reason.EMPTY_OUTPUT


def test_kind_comes_from_the_content_and_markers_are_removed_everywhere():
    s, _ = _one("output: yes |EoS| input: no")  # 'input:' in the line: the type A branch
    assert s.verdict.reason == Reason.INVALID_FORMAT and s.kind == "input_output"
    s, _ = _one("output: it is |EoS|")
    assert s.output == "it is"
    s, _ = _one("Sure! Here is an example.\noutput: 1")
    assert s.kind is None and s.verdict.reason == Reason.INVALID_FORMAT


def test_empty_response_is_a_rejection_not_a_crash():
    s, samples = _one("  \n ")
    assert len(samples) == 1 and s.verdict.reason == Reason.EMPTY_RESPONSE


def test_blocks_split_at_blank_lines_and_at_carets():
    s, samples = _one("output: 2^10 is 1024")
    assert s.output == "2" and len(samples) == 1  # the code's '^' substitution (kept)
    _, samples = _one("output: a\n\ninstruction: Another task.\noutput: b")
    assert len(samples) == 1  # later blocks start with 'instruction:': nothing harvested


def test_harvest_branch_of_later_blocks():
    raw = ("input: x\noutput: y\n|EoS|\n\n"
           "instruction: Use the input: and do five things\ninput: q\noutput: r\n\n"
           "instruction: Say it with output: please now\noutput: done")
    _, samples = _one(raw)
    assert [(s.position, s.kind, s.harvested) for s in samples] == [
        (0, "input_output", False), (1, "input_output", True), (2, "output_only", True)]
    assert samples[1].instruction == "Use the input: and do five things"
    assert (samples[1].input, samples[1].output) == ("q", "r")
    assert samples[2].output == "done"


def test_instruction_pieces_clean_and_paper_modes():
    rules = paper_rules()
    response = " Name three rivers in Asia. |EoS| |EoS|\n25. Sort the numbers given. |EoS|"
    clean = parse_instruction_response(response, rules)
    assert [p.text for p in clean] == ["Name three rivers in Asia.", "Sort the numbers given."]
    paper = parse_instruction_response(response, rules, eos_suffix=True)
    assert [p.text for p in paper] == ["Name three rivers in Asia. |EoS| |EoS|",
                                       "Sort the numbers given. |EoS|"]
    # The marker counts as a word in the paper's mode.
    short = " Sort these numbers. |EoS|"
    assert not parse_instruction_response(short, rules)[0].verdict.keep
    assert parse_instruction_response(short, rules, eos_suffix=True)[0].verdict.keep


def test_instruction_rules_differ_from_self_instruct_where_the_code_does():
    rules = paper_rules()
    lower = parse_instruction_response(" write a program that adds two numbers", rules)
    assert lower[0].verdict.keep  # prefix is case sensitive in Ensemble-Instruct's code
    upper = parse_instruction_response(" Write a program that adds two numbers", rules)
    assert upper[0].verdict.reason == Reason.STARTS_WITH_WRITE_A_PROGRAM
    assert parse_instruction_response(" |EoS| ", rules)[0].verdict.reason == \
        Reason.EMPTY_RESPONSE


def test_legacy_argsort_is_an_argsort():
    rng = random.Random(3)
    for _ in range(200):
        values = [rng.randint(0, 6) / 3 for _ in range(rng.randint(0, 90))]
        order = legacy_argsort(values)
        assert sorted(order) == list(range(len(values)))
        assert [values[i] for i in order] == sorted(values)
        unique = rng.sample(range(1000), len(values))  # no ties: same as any argsort
        assert legacy_argsort(unique) == list(np.argsort(unique))


def test_similarity_report_collapses_equal_pool_texts():
    avg, most = similarity_report("name a red fruit", ["name a red fruit", "name a red fruit",
                                                       "bake bread"], top=2)
    assert most == {"name a red fruit": 1.0}
    assert avg == 2 / 3


def test_our_instance_prompts_demonstrate_the_format_the_parser_reads():
    from prompts import load_prompt

    for name, kind in (("instance_input_output", "input_output"),
                       ("instance_output_only", "output_only")):
        source = load_prompt("ensemble_instruct", name, 1).source
        assert source.endswith("\n\ninstruction: {{ instruction }}\n")
        demos = source.split("\n\n")[1:-1]
        assert len(demos) >= 12
        kept = 0
        for demo in demos:
            head, body = demo.split("\n", 1)
            assert head.startswith("instruction: ") and body.endswith("\n|EoS|")
            sample = parse_raw_instances(head, body)[0]
            assert sample.kind == kind
            kept += sample.verdict.keep
        # Type B shows one multi-line (code) output, as the paper's template does: the
        # paper's single-line parser would drop it.
        assert kept == len(demos) - (kind == "output_only")
