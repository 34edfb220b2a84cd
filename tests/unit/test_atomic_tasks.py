"""The pure atomic-task rules: which rows reverse (and why not), the multi-part signal, the
strict reading of a split, and deterministic recombination."""

from __future__ import annotations

import json
import random
from dataclasses import replace

import pytest

from filters.atomic_tasks import (
    CHOOSE_ANSWER,
    DISTRACTOR_ROUGE_L,
    DISTRACTOR_THRESHOLD,
    RECOMBINATION,
    REVERSAL,
    REVERSE_REQUEST,
    TRUNCATED,
    UNPARSABLE,
    RecombinationRule,
    ReversalRule,
    SimplifyRule,
    Subtask,
    count_parts,
    group_of,
    judge_reversal,
    judge_simplification_candidate,
    judge_subtasks,
    parse_subtasks,
    recombine_group,
    reverse,
    subtask_schema,
)
from schemas import InstructionRecord, Reason, stable_id

ANSWER = "Paris is the capital of France and has been its seat of government for centuries."


def row(instruction: str, output: str = ANSWER, input: str = "", n: int = 0
        ) -> InstructionRecord:
    rid = stable_id("t", n, instruction, input, output)
    return InstructionRecord(id=rid, content_hash=rid, recipe="filter", stage="input", round=0,
                             instruction=instruction, input=input, output=output,
                             origin="external_x", task_id=rid, slot=0, position=n)


# --- reversal --------------------------------------------------------------------------------

@pytest.mark.parametrize(("record", "reason"), [
    (row("What is the capital of France?"), None),  # QA -> question generation
    (row("Translate to French.", "Le chat dort sur le canapé depuis ce matin, tranquille.",
         "The cat has been sleeping on the sofa since this morning, calmly."), None),
    (row("   "), Reason.EMPTY_INSTRUCTION),
    (row("What is the capital of France?", "  "), Reason.EMPTY_OUTPUT),
    (row("Repeat after me: the sky is blue today and every day.",
         "Repeat after me: the sky is blue today and every day."), Reason.INPUT_EQUALS_OUTPUT),
    (row("Is this review positive?", "Yes.", "Great food and friendly staff."),
     Reason.OUTPUT_TOO_SHORT_TO_REVERSE),  # a label fits countless requests
    (row("Capital of France?", "Paris."), Reason.OUTPUT_TOO_SHORT_TO_REVERSE),
    (row("Fix this code: " + "x = 1; " * 80), Reason.REQUEST_TOO_LONG_TO_REVERSE),
    (row("Summarize the text.", "A river flows from the hills down to the sea today.",
         "word " * 200), Reason.LOSSY_REVERSAL),  # a summary cannot give back its text
])
def test_which_rows_reverse_and_why_not(record, reason):
    verdict = judge_reversal(record, ReversalRule())
    assert verdict.keep is (reason is None)
    assert verdict.reason == reason
    if reason is not None:
        assert verdict.detail


def test_reversal_swaps_request_and_answer_and_records_lineage():
    source = row("What is the capital of France?")
    derived = reverse(source, "atomic_reversal")
    assert (derived.instruction, derived.input, derived.output) == (
        REVERSE_REQUEST, ANSWER, "What is the capital of France?")
    assert derived.derived_from == (source.id,) and derived.transform == REVERSAL
    assert derived.recipe == "atomic_tasks" and derived.id != source.id
    assert derived.position == source.position and derived.origin == source.origin

    with_input = row("Translate to French.", "Le chat dort.", "The cat sleeps.")
    back = reverse(with_input, "atomic_reversal")
    assert "Translate to French." in back.instruction
    assert (back.input, back.output) == ("Le chat dort.", "The cat sleeps.")


def test_reversal_thresholds_are_the_configured_ones():
    record = row("What is the capital of France?", "Paris, on the Seine.")
    assert judge_reversal(record, ReversalRule(min_output_words=8)).reason == \
        Reason.OUTPUT_TOO_SHORT_TO_REVERSE
    assert judge_reversal(record, ReversalRule(min_output_words=4)).keep


# --- simplification --------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "parts"), [
    ("What is the capital of France?", 1),
    ("What is the capital of France? And how many people live there?", 2),
    ("Do three things:\n1. name a fruit\n2. name a colour\n3. name a city", 3),
    ("Write a haiku about rain. Then explain its meter.", 2),
    ("Explain recursion. Give an example. Compare it with iteration.", 3),
    ("The weather is nice. I like walking.", 0),
])
def test_count_parts(text, parts):
    assert count_parts(text) == parts


@pytest.mark.parametrize(("record", "reason"), [
    (row("Name a fruit. Then explain why it is healthy."), None),
    (row("What is the capital of France?"), Reason.SINGLE_PART_TASK),
    (row("Name a fruit. Then explain why.", ""), Reason.EMPTY_OUTPUT),
    (row("Name a fruit. Then explain why.", "x" * 4000), Reason.OVERLONG_INSTANCE),
])
def test_which_rows_go_to_the_generator(record, reason):
    assert judge_simplification_candidate(record, SimplifyRule()).reason == reason


def test_select_all_sends_single_part_rows_too():
    record = row("What is the capital of France?")
    assert judge_simplification_candidate(record, SimplifyRule(select_all=True)).keep


GOOD = json.dumps({"subtasks": [{"instruction": "Name the capital of France.",
                                 "output": "Paris is the capital of France"},
                                {"instruction": "Say how long it has been the seat.",
                                 "output": "for centuries"}]})


@pytest.mark.parametrize(("text", "finish", "error"), [
    (GOOD, "stop", None),
    ('{"subtasks": []}', "stop", None),
    (GOOD[:40], "length", TRUNCATED),
    ("Sure! Here are the sub-tasks: 1. ...", "stop", UNPARSABLE),
    ("```json\n" + GOOD + "\n```", "stop", UNPARSABLE),  # nothing is repaired
    ('{"tasks": []}', "stop", UNPARSABLE),
    ('{"subtasks": [], "note": "x"}', "stop", UNPARSABLE),
    ('{"subtasks": {"instruction": "a", "output": "b"}}', "stop", UNPARSABLE),
    ('{"subtasks": [{"instruction": "a"}]}', "stop", UNPARSABLE),
    ('{"subtasks": [{"instruction": "a", "output": 3}]}', "stop", UNPARSABLE),
    ('[{"instruction": "a", "output": "b"}]', "stop", UNPARSABLE),
    (json.dumps({"subtasks": [{"instruction": "a", "output": "b"}] * 5}), "stop", UNPARSABLE),
])
def test_answers_are_read_strictly(text, finish, error):
    parsed = parse_subtasks(text, finish, max_subtasks=4)
    assert parsed.error == error
    assert parsed.ok is (error is None)
    if error:
        assert parsed.detail and not parsed.subtasks


def test_parsed_subtasks_are_stripped_in_order():
    parsed = parse_subtasks(GOOD, "stop", 4)
    assert [s.instruction for s in parsed.subtasks] == [
        "Name the capital of France.", "Say how long it has been the seat."]


def test_the_schema_bounds_what_the_parser_accepts():
    schema = subtask_schema(3, 200)
    assert schema["properties"]["subtasks"]["maxItems"] == 3
    assert schema["properties"]["subtasks"]["items"]["properties"]["output"]["maxLength"] == 200
    assert schema["additionalProperties"] is False


def test_subtasks_are_judged_against_the_source_answer():
    source = row("What is the capital of France? How long has it been so?")
    judged = judge_subtasks([
        Subtask("Name the capital of France.", "paris is the  CAPITAL of France"),  # grounded
        Subtask("Name the capital of France.", "Paris"),  # duplicate instruction
        Subtask("Name its population.", "Two million people"),  # not in the answer
        Subtask(source.instruction, "Paris"),  # the whole request again
        Subtask("", "Paris"),
        Subtask("Say since when.", ""),
        Subtask("paris is the capital of france", "Paris is the capital of France"),  # echo
    ], source, grounded=True)
    assert [v.reason for _, v in judged] == [
        None, Reason.DUPLICATE_INSTANCE, Reason.UNGROUNDED_SUBTASK, Reason.SAME_AS_SOURCE,
        Reason.EMPTY_INSTRUCTION, Reason.EMPTY_OUTPUT, Reason.INPUT_EQUALS_OUTPUT]
    free = judge_subtasks([Subtask("Name its population.", "Two million")], source, False)
    assert free[0][1].keep


def test_grounding_matches_whole_words_not_substrings():
    """"no" is not a passage of "I know"; "paris." is one of "... is Paris, a city"."""
    source = row("Do you know the answer? Is Paris big?", "I know it well: Paris, a big city.")
    judged = judge_subtasks([Subtask("Do you know the answer?", "no"),
                             Subtask("Is Paris big?", "Paris a big city")], source, True)
    assert [v.reason for _, v in judged] == [Reason.UNGROUNDED_SUBTASK, None]


def test_a_subtask_request_must_be_part_of_the_source_request():
    """An answer passage does not make an invented request right: the sub-task must ask for
    part of what the source asked for (content words), or it is `off_request_subtask`."""
    source = row("What is the capital of France? How long has it been the capital?",
                 "Paris is the capital of France. It has been the capital since 987.")
    judged = judge_subtasks([
        Subtask("What is the capital of France?", "Paris is the capital of France."),
        Subtask("Since when has Paris been the capital?", "since 987"),
        Subtask("Write a poem about bread.", "Paris is the capital"),
    ], source, grounded=True)
    assert [v.reason for _, v in judged] == [None, None, Reason.OFF_REQUEST_SUBTASK]
    assert judged[2][1].score == 0.0
    free = judge_subtasks([Subtask("Write a poem about bread.", "x")], source, False)
    assert free[0][1].keep


# --- recombination ---------------------------------------------------------------------------

# Seven answers that share no word (distractors must not be near-copies of the answer).
_WORDS = ("amber river", "basalt candle", "cobalt violin", "dusty harbor", "emerald pepper",
          "frozen lantern", "golden saddle")
POOL = [row(f"Question number {i}?", f"{_WORDS[i % 7]} {i % 7}.", n=i) for i in range(30)]


def test_recombination_builds_a_multiple_choice_task_with_lineage():
    rule = RecombinationRule(options=4, seed=3)
    judged = recombine_group(POOL, rule, "atomic_recombination")
    assert [r.id for r, _, _ in judged] == sorted(r.id for r in POOL)
    anchor, verdict, derived = judged[0]
    assert verdict.keep and derived is not None
    assert derived.instruction == CHOOSE_ANSWER and derived.transform == RECOMBINATION
    assert derived.derived_from[0] == anchor.id and len(derived.derived_from) == 4
    assert anchor.instruction in derived.input
    by_id = {r.id: r for r in POOL}
    shown = [by_id[i].output for i in derived.derived_from]
    assert len(set(shown)) == 4  # distinct answers only
    letter = derived.output
    assert f"{letter}. {anchor.output}" in derived.input


def test_recombination_is_deterministic_and_independent_of_arrival_order():
    rule = RecombinationRule(options=3, seed=11)
    shuffled = POOL[:]
    random.Random(0).shuffle(shuffled)
    first = recombine_group(POOL, rule, "s")
    assert recombine_group(shuffled, rule, "s") == first
    other_seed = recombine_group(POOL, replace(rule, seed=12), "s")
    assert [d.input for _, _, d in other_seed] != [d.input for _, _, d in first]


def test_recombination_says_why_a_row_gets_no_task():
    rows = [row("Q1?", "same answer", n=1), row("Q2?", "Same  answer", n=2),
            row("Q3?", "other answer", n=3), row("Q4?", "x" * 500, n=4), row("Q5?", "", n=5)]
    rule = RecombinationRule(options=3, group_size=3)
    judged = {r.instruction: v for r, v, _ in recombine_group(rows, rule, "s")}
    # Q1 and Q2 give one answer (case and spaces aside): two distinct answers in all, and
    # each row needs two other ones.
    assert {judged[q].reason for q in ("Q1?", "Q2?", "Q3?")} == {Reason.TOO_FEW_OPTIONS}
    assert judged["Q4?"].reason == Reason.OPTION_TOO_LONG
    assert judged["Q5?"].reason == Reason.EMPTY_OUTPUT
    more = {r.instruction: v for r, v, _ in recombine_group(
        [*rows, row("Q6?", "third answer", n=6)], rule, "s")}
    assert all(more[q].keep for q in ("Q1?", "Q2?", "Q3?", "Q6?"))


def test_distractors_too_similar_to_the_answer_are_left_out_and_the_threshold_recorded():
    """Two greetings are two right answers: "Hi!" is never a wrong choice for "hi"."""
    rows = [row("Greet me.", "hi", n=1), row("Say hello.", "Hi!", n=2),
            row("Name a fruit.", "A ripe banana", n=3), row("Name a metal.", "Iron ore", n=4),
            row("Name a river.", "The Danube river", n=5)]
    rule = RecombinationRule(options=3, group_size=5)
    judged = {r.instruction: (v, d) for r, v, d in recombine_group(rows, rule, "s")}
    for request, own in (("Greet me.", "Hi!"), ("Say hello.", "hi")):
        verdict, derived = judged[request]
        assert verdict.keep and derived is not None
        others = {r.output for r in rows if r.id in derived.derived_from[1:]}
        assert own not in others  # the other greeting is never a distractor
        assert dict(derived.scores)[DISTRACTOR_THRESHOLD] == 0.7
        assert dict(derived.scores)[DISTRACTOR_ROUGE_L] <= 0.7
    strict = RecombinationRule(options=5, group_size=5)
    verdict, _ = {r.instruction: (v, d) for r, v, d in recombine_group(rows, strict, "s")
                  }["Greet me."]
    assert verdict.reason == Reason.TOO_FEW_OPTIONS and "ROUGE-L > 0.7" in verdict.detail


def test_groups_spread_rows_and_depend_only_on_id_total_and_seed():
    rule = RecombinationRule(group_size=10, seed=1)
    groups = [group_of(r.id, 30, rule) for r in POOL]
    assert set(groups) <= {0, 1, 2} and len(set(groups)) > 1
    assert groups == [group_of(r.id, 30, rule) for r in POOL]
    assert {group_of(r.id, 5, rule) for r in POOL} == {0}  # fewer rows than a group: one


def test_conversation_fragments_are_no_source_for_any_transform():
    """A ShareGPT conversation that opens with the assistant's message is a piece of a longer
    chat: its first user turn leans on what came before, so no transform builds on it."""
    turns = [{"role": "assistant", "content": "Here is the rest of the list."},
             {"role": "user", "content": "Now translate all of them into French please."},
             {"role": "assistant", "content": "Voici la liste complète traduite en français."}]
    fragment = replace(row("Now translate all of them into French please.",
                           "Voici la liste complète traduite en français, avec chaque terme."),
                       conversation=json.dumps(turns))
    assert judge_reversal(fragment, ReversalRule()).reason == Reason.CONVERSATION_FRAGMENT
    assert judge_simplification_candidate(fragment, SimplifyRule(select_all=True)
                                          ).reason == Reason.CONVERSATION_FRAGMENT
    judged = recombine_group([fragment, *POOL[:6]], RecombinationRule(options=3), "s")
    assert {r.id: v.reason for r, v, _ in judged}[fragment.id] == Reason.CONVERSATION_FRAGMENT
    whole = replace(fragment, conversation=json.dumps(turns[1:]))
    assert judge_reversal(whole, ReversalRule()).keep

