"""UltraChat's pure steps: list parsing, turn rules, the dialogue state machine, statistics."""

from __future__ import annotations

from dataclasses import replace

import pytest

from filters.dialogue_stats import DialogueNumbers, dialogue_numbers, mtld, summarize
from filters.ultrachat import TurnRules, check_turn, clean_user_turn, parse_list
from pipelines.config import RunConfig, load_config
from pipelines.errors import InputError
from pipelines.generators.backends import GeneratorIdentity, served_context
from pipelines.generators.cache import cache_key
from pipelines.generators.generation import Completion, GenerationOutcome, GenerationRequest
from pipelines.recipes.ultrachat import dialogue, steps
from pipelines.recipes.ultrachat.config import UltraChatConfig
from pipelines.recipes.ultrachat.stats import build_report
from pipelines.settings import GeneratorConfig
from pipelines.transforms.provenance import Provenance
from schemas import Message, Reason

RULES = TurnRules()


def _cfg(**uc) -> RunConfig:
    return RunConfig(recipe="ultrachat", output_dir="out",
                     ultrachat=UltraChatConfig(**uc))  # type: ignore[arg-type]


def test_parse_list_reads_numbered_and_bulleted_items_only():
    text = 'Here are some:\n1. "Ocean tides"\n2) Volcano  types\n- Rivers of Asia\nThanks!'
    assert parse_list(text) == ["Ocean tides", "Volcano  types", "Rivers of Asia"]
    assert parse_list("Ocean tides and volcanoes, in prose.") == []


def test_clean_user_turn_drops_the_role_label_and_quotes():
    assert clean_user_turn('User: "Can you give an example?"') == "Can you give an example?"
    assert clean_user_turn("**User:** Why?") == "Why?"
    assert clean_user_turn("Users of Linux ask: why?") == "Users of Linux ask: why?"


@pytest.mark.parametrize(("text", "finish", "role", "reason"), [
    ("Tell me more.", "length", "user", Reason.TURN_TRUNCATED),
    ("   ", "stop", "assistant", Reason.EMPTY_TURN),
    ("Sure! Here is the answer: tides come from the moon.", "stop", "user", Reason.ROLE_DRIFT),
    ("Assistant: the moon pulls the water.", "stop", "user", Reason.ROLE_DRIFT),
    ("I'm sorry, but I cannot help with that.", "stop", "assistant", Reason.REFUSAL),
    ("Tides are fine. As an AI language model I have no feelings.", "stop", "assistant",
     Reason.REFUSAL),
    ("How do tides work?", "stop", "user", Reason.REPEATED_TURN),
    ("Surely the moon is not the only cause?", "stop", "user", None),
    ("Sure is a word I use; could you list three causes?", "stop", "assistant", None),
])
def test_check_turn_reasons(text, finish, role, reason):
    verdict = check_turn(text, finish, role, ["How do tides work?"], RULES)
    assert (verdict.reason if not verdict.keep else None) == reason


def test_a_repeat_scores_its_rouge_l():
    verdict = check_turn("how do tides work", "stop", "user", ["How do tides work?"], RULES)
    assert verdict.reason == Reason.REPEATED_TURN and verdict.score == 1.0
    verdict = check_turn("What about rivers?", "stop", "user", ["How do tides work?"], RULES)
    assert verdict.keep and verdict.score == 0.0


def test_mtld_and_distinct_n():
    assert mtld("a a a a".split()) == 2.0  # a factor every two tokens, both directions
    assert mtld("every word here differs".split()) == 4.0  # no factor: its length
    assert mtld([]) == 0.0
    numbers = dialogue_numbers((Message("user", "Why is it so?"),
                                Message("assistant", "Because the moon pulls."),
                                Message("user", "And the sun?"),
                                Message("assistant", "It pulls too.")), rounds=2)
    assert numbers[:7] == (1, 2, 4, 2, 7, 2, 7)
    total = numbers.add(numbers)
    figures = summarize(total, {1: (5, 10), 2: (3, 6)})
    assert figures["rounds_per_dialogue"] == 2.0 and figures["user_turn_words"] == 3.5
    assert figures["distinct_1"] == 0.5 and figures["distinct_2"] == 0.5
    assert summarize(DialogueNumbers(), {})["dialogues"] == 0


def _outcome(request: GenerationRequest, text: str, finish: str = "stop",
             tokens: tuple[int, int] = (0, 0)) -> GenerationOutcome:
    return GenerationOutcome(request, Completion(text, finish, *tokens))


IDENTITY = GeneratorIdentity("m", "r", "m")


def test_judge_list_rejects_a_cut_last_item_extras_and_short_items():
    cfg = _cfg()
    parent = steps.given_rows(["tides"], steps.STAGE_TOPICS, steps.WORLD)[0]
    [request] = steps.list_request(parent, steps.STAGE_QUESTIONS, "questions", 2, cfg,
                                   topic="tides")
    judged = steps.judge_list(_outcome(request, "1. Why do tides rise?\n2. Tides\n"
                                                "3. What moves the sea?\n4. How far do"),
                              Provenance(IDENTITY))
    verdicts = [(r.instruction, v.reason) for r, v in judged]
    assert verdicts == [("Why do tides rise?", None), ("Tides", Reason.TOO_SHORT),
                        ("What moves the sea?", Reason.NOT_SAMPLED),
                        ("How far do", Reason.NOT_SAMPLED)]
    judged = steps.judge_list(_outcome(request, "1. Why do tides rise?\n2. How far do",
                                       "length"), Provenance(IDENTITY))
    assert [v.reason for _, v in judged] == [None, Reason.RESPONSE_TRUNCATED]
    [(row, verdict)] = steps.judge_list(_outcome(request, "No list."), Provenance(IDENTITY))
    assert verdict.reason == Reason.UNPARSABLE_RESPONSE and row.output == "No list."
    assert judged[0][0].topic == "tides" and judged[0][0].task_id == parent.id


def _dialogue(cfg: RunConfig, rounds: int) -> dialogue.Dialogue:
    opening = steps.given_rows(["How do tides work?"], steps.STAGE_QUESTIONS, steps.WORLD)[0]
    return replace(dialogue.start(opening, cfg), rounds_wanted=rounds)


def test_a_dialogue_alternates_and_ends_at_its_drawn_rounds():
    cfg = _cfg(min_rounds=2, max_rounds=2)
    plan = dialogue.budget(cfg)
    d = _dialogue(cfg, 2)
    request = dialogue.assistant_step(d, 1, cfg, plan)
    assert isinstance(request, GenerationRequest)
    assert request.messages == (("user", "How do tides work?"),) and request.api == "chat"
    d = dialogue.judge_turn(_outcome(request, "The moon pulls the sea."), RULES, "m")
    assert not d.over and d.rounds == 1
    request = dialogue.user_step(d, 2, cfg, plan)
    assert isinstance(request, GenerationRequest) and "The moon pulls" in request.prompt
    d = dialogue.judge_turn(_outcome(request, "User: And the sun?"), RULES, "u")
    assert d.messages[-1] == Message("user", "And the sun?")
    d = dialogue.judge_turn(_outcome(dialogue.assistant_step(d, 2, cfg, plan),
                                     "It pulls as well, less."), RULES, "m")
    assert d.end == dialogue.ROUNDS_REACHED and d.generators[1:] == ("m", "u", "m")
    row, verdict = dialogue.dialogue_row(d, IDENTITY, cfg)
    assert verdict.keep and row.rounds == 2 and row.output == "The moon pulls the sea."
    assert dialogue.user_step(replace(d, end=None), 3, cfg, plan).end == \
        dialogue.ROUNDS_REACHED
    assert "ultrachat_dialogues" == row.stage and row.instruction == "How do tides work?"


def test_role_drift_ends_the_dialogue_rejected_with_the_turn():
    cfg = _cfg()
    d = _dialogue(cfg, 3)
    d = dialogue.judge_turn(_outcome(dialogue.assistant_step(d, 1, cfg, dialogue.budget(cfg)),
                                     "Tides come from the moon."), RULES, "m")
    request = dialogue.user_step(d, 2, cfg, dialogue.budget(cfg))
    d = dialogue.judge_turn(_outcome(request, "Certainly! Tides have two causes."), RULES, "u")
    row, verdict = dialogue.dialogue_row(d, IDENTITY, cfg)
    assert verdict.reason == Reason.ROLE_DRIFT and row.dialogue_end == "role_drift"
    assert len(row.messages) == 3 and row.rounds == 1


def test_the_context_budget_ends_a_dialogue_before_a_round_that_does_not_fit():
    cfg = _cfg(context_tokens=1000, context_margin_tokens=0)
    plan = dialogue.budget(cfg)
    assert plan.limit == 1000 and plan.user_max + plan.assistant_max == 512
    d = _dialogue(cfg, 5)
    d = dialogue.judge_turn(_outcome(dialogue.assistant_step(d, 1, cfg, plan), "Moon.",
                                     tokens=(400, 100)), RULES, "m")
    assert d.last_tokens == 500  # the server's count: 500 + 128 + 384 > 1000
    assert dialogue.user_step(d, 2, cfg, plan).end == dialogue.CONTEXT_FULL
    d = replace(d, last_tokens=488)  # 488 + 512 = 1000: fits exactly
    assert isinstance(dialogue.user_step(d, 2, cfg, plan), GenerationRequest)
    ended = dialogue.user_step(replace(d, last_tokens=489), 2, cfg, plan)
    assert ended.end == dialogue.CONTEXT_FULL and ended.verdict is None  # 1 round: kept
    tight = _cfg(context_tokens=100)
    first = dialogue.assistant_step(_dialogue(tight, 3), 1, tight, dialogue.budget(tight))
    assert first.verdict.reason == Reason.CONTEXT_EXCEEDED and first.rounds == 0


def test_server_context_reads_max_model_len():
    assert served_context(GeneratorConfig()) == 4096
    gen = GeneratorConfig(server_args=("--max-model-len=2048",))
    assert served_context(gen) == 2048
    assert served_context(GeneratorConfig(server_args=())) is None
    assert dialogue.budget(_cfg()).limit == 4096


def test_sector_sample_is_seeded_and_keeps_n():
    rows = steps.given_rows([f"q{i} about x" for i in range(6)], steps.STAGE_QUESTIONS,
                            steps.WORLD)
    first = steps.sample_sector(rows, 2, seed=1)
    assert [v.keep for _, v in first].count(True) == 2
    assert first == steps.sample_sector(list(reversed(rows)), 2, seed=1)


def test_report_summary_rows():
    report = build_report(None, DialogueNumbers(2, 6, 12, 6, 30, 6, 60, 20.0),
                          {1: (10, 20)}, [(3, 2)], [("world", 3)], [("world", 2)],
                          [("rounds_reached", 2)], [("role_drift", 1)])
    assert report["dialogues"] == 2 and report["rounds_histogram"] == {"3": 2}
    assert ["rejected: role_drift", 1] in report["summary"]
    assert ["opening lines: world", 3] in report["summary"]


def test_a_multi_turn_request_sends_its_messages_and_keys_the_cache_on_them():
    base = GenerationRequest("r", "s", 1, "x", "same prompt", "ref", {"max_tokens": 8}, 1,
                             api="chat")
    one = replace(base, messages=(("user", "Hi"),))
    two = replace(base, messages=(("user", "Hi"), ("assistant", "Hello"), ("user", "Why?")))
    keys = {cache_key("m", "r", req) for req in (base, one, two)}
    assert len(keys) == 3


def test_ultrachat_may_read_an_input_other_generators_may_not(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("recipe: ultrachat\noutput_dir: out\ninput: {path: p.jsonl}\n")
    assert load_config(path).input is not None
    path.write_text("recipe: self_instruct\noutput_dir: out\ninput: {path: p.jsonl}\n")
    with pytest.raises(InputError, match="input"):
        load_config(path)
    path.write_text("recipe: ultrachat\noutput_dir: out\nultrachat: {min_rounds: 5, "
                    "max_rounds: 3}\n")
    with pytest.raises(InputError, match="min_rounds"):
        load_config(path)
