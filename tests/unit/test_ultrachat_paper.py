"""UltraChat as the paper describes it (issue 24): what was silently wrong, and the paper's
steps that were missing. Each test failed on the code before the fix."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

from filters import dialogue_stats
from filters.dialogue_stats import DialogueNumbers, mtld, words
from filters.near_dup import record_text
from filters.rules import RuleConfig, changed_fields, check_rules, judge
from filters.tag_embeddings import REQUIRES, trigram_embed
from filters.ultrachat import TurnRules, check_turn
from pipelines.config import RunConfig, load_config
from pipelines.errors import InputError
from pipelines.generators.backends import GeneratorIdentity
from pipelines.generators.generation import Completion, GenerationOutcome
from pipelines.recipes.ultrachat import dialogue, stats, steps
from pipelines.recipes.ultrachat.config import MaterialsConfig, UltraChatConfig
from pipelines.recipes.ultrachat.stats import build_report
from pipelines.settings import FieldError
from schemas import InstructionRecord, Message, Reason

_OLD_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")  # the ASCII tokenizer MTLD is usually run with


def test_words_are_unicode_words():
    assert words("Café naïve") == ["café", "naïve"]
    assert words("nai\u0308ve") == ["naïve"]  # combining diaeresis: the same word
    assert words("Привет, мир") == ["привет", "мир"]
    chinese = words("今天天气很好，我们去公园散步吧")
    assert len(chinese) == 14 and mtld(chinese) > 0


def test_words_match_the_ascii_tokenizer_on_english():
    rng = random.Random(7)
    alphabet = "abcdefghij XYZ 0129 ' , . - _ \n don't it's rock'n'roll 90's x'1"
    for _ in range(500):
        text = "".join(rng.choice(alphabet.split(" ")) + rng.choice(" '.,_-")
                       for _ in range(rng.randint(0, 40)))
        assert words(text) == _OLD_WORD.findall(text.lower()), text


# --- the filter chain sees every turn of a dialogue -------------------------------------

def _dialogue_row(*turns: str, **fields) -> InstructionRecord:
    messages = tuple(Message("user" if i % 2 == 0 else "assistant", t)
                     for i, t in enumerate(turns))
    return InstructionRecord(id="d", content_hash="h", recipe="ultrachat",
                             stage="ultrachat_dialogues", round=len(turns) // 2,
                             instruction=turns[0], output=turns[1], messages=messages,
                             rounds=len(turns) // 2, **fields)


FOUR_TURNS = ("How do tides work?", "The moon pulls the sea.", "And the sun?",
              "As an AI, I think the sun pulls too. " + "Tides rise and fall. " * 450)


def test_rules_see_every_turn_and_name_the_failing_one():
    row = _dialogue_row(*FOUR_TURNS)
    verdict = check_rules(row, RuleConfig(max_chars=8000))
    assert verdict.reason == Reason.OVERLONG_INSTANCE and "turn 4 (assistant)" in verdict.detail
    verdict = check_rules(row, RuleConfig(max_chars=20000, illegal_words=("as an ai",)))
    assert verdict.reason == Reason.ILLEGAL_WORD and verdict.detail == "as an ai in turn 4 " \
        "(assistant)"
    empty = _dialogue_row("Hi there", "Hello.", "More?", "   ")
    verdict = check_rules(empty, RuleConfig())
    assert verdict.reason == Reason.EMPTY_OUTPUT and verdict.detail == "turn 4 (assistant)"
    assert check_rules(_dialogue_row(*FOUR_TURNS[:3], "It pulls too."), RuleConfig(
        illegal_words=("as an ai",))).keep


def test_normalization_rewrites_the_turns_and_output_follows_them():
    row = _dialogue_row("Why  is the sky blue?  ", "Light  scatters.   \n\n\n\nBlue most.",
                        "Red?", "Less so.  ")
    normalized, verdict = judge(row, RuleConfig())
    assert verdict.keep
    assert normalized.messages[1].content == "Light scatters.\n\nBlue most."
    assert normalized.output == normalized.messages[1].content
    assert normalized.messages[0].content == normalized.instruction == "Why is the sky blue?"
    assert normalized.messages[3].content == "Less so."
    assert "messages" in changed_fields(row, normalized)


def test_near_duplicates_compare_whole_dialogues():
    a = _dialogue_row("How do tides work?", "The moon pulls the sea.", "Why?", "Gravity.")
    b = _dialogue_row("How do tides work?", "The moon pulls the sea.", "Show me a poem.",
                      "Waves in the dark.")
    fields = ("instruction", "input", "output")
    assert record_text(a, fields) != record_text(b, fields)
    assert "Gravity." in record_text(a, fields)


# --- sector 3: an opening line is a request and its passage -----------------------------

def _material(i: int, text: str, passage: str) -> InstructionRecord:
    return InstructionRecord(id=f"m{i}", content_hash=f"h{i}", recipe="ultrachat",
                             stage=steps.STAGE_MATERIAL, round=0, instruction=text,
                             input=passage, sector=steps.MATERIALS)


def test_a_generic_request_over_different_passages_is_no_duplicate():
    passages = [f"Passage number {i} about {w} and more words." for i, w in
                enumerate(("tides", "rivers", "glaciers"))]
    rows = [_material(i, "Summarize this text in two sentences.", p)
            for i, p in enumerate(passages)]
    groups: dict[str, list[InstructionRecord]] = {}
    for r in rows:
        groups.setdefault(steps.passage_key(r), []).append(r)
    judged = [j for g in groups.values() for j in steps.dedup_passage_requests(g, 0.7)]
    assert all(v.keep for _, v in judged) and len(judged) == 3
    same = [_material(0, "Summarize this text in two sentences.", passages[0]),
            _material(1, "Summarize the text in two sentences.", passages[0]),
            _material(2, "Translate this text into French.", passages[0])]
    judged = steps.dedup_passage_requests(same, 0.7)
    assert [v.reason for _, v in judged] == [None, Reason.NOT_NOVEL, None]
    assert judged[1][0].most_similar == "Summarize this text in two sentences."


def test_the_audit_sample_carries_every_turn(tmp_path):
    from pipelines.outputs.audit import _WriteAuditFn
    from pipelines.outputs.review import read_sample

    row = _dialogue_row(*FOUR_TURNS[:3], "It pulls too.")
    (tmp_path / "audit").mkdir()
    list(_WriteAuditFn(str(tmp_path / "audit"), 0).process(("machine", [row])))
    [sample] = read_sample(tmp_path)
    assert [m["content"] for m in sample.extra["messages"]][2:] == ["And the sun?",
                                                                    "It pulls too."]


# --- what the demo kept that a trainer would not (issue 24 §4) --------------------------

LOOP = ("To make bread, mix flour and water. Knead the dough for ten minutes. "
        "Knead the dough for ten minutes. Knead the dough for ten minutes.")


@pytest.mark.parametrize(("text", "role", "reason"), [
    ("I'm ready to help. What's your next question?", "user", "role_drift"),
    ("Thanks, that is clear. What's your next question?", "user", "role_drift"),
    ("Good point.\nUser: and what about rye flour?", "user", "speaker_label"),
    ("Rye needs more water.\n\nUser: Can I use it for pizza?\nAssistant: Yes.", "assistant",
     "speaker_label"),
    (LOOP, "assistant", "turn_loop"),
    ("bake it slowly and then " * 6, "assistant", "turn_loop"),
    ("Knead the dough. Rest it. Knead the dough. Shape it. Knead the dough.", "assistant",
     None),  # a short refrain, not a loop
    ("What does the user: field in the form mean?", "user", None),
    ("Could you help me with rye bread, and how can it rise more?", "user", None),
])
def test_demo_turns_a_trainer_would_not_keep(text, role, reason):
    verdict = check_turn(text, "stop", role, ["How do I bake bread?"], TurnRules())
    assert (verdict.reason if not verdict.keep else None) == reason, verdict


def test_the_loop_and_label_rules_are_configurable():
    assert check_turn(LOOP, "stop", "assistant", [], TurnRules(loop_repeats=0)).keep
    sample_chat = "Here is a sample:\nUser: Hi\nChatbot: Hello! How can I help?"
    assert not check_turn(sample_chat, "stop", "assistant", [], TurnRules()).keep
    assert check_turn(sample_chat, "stop", "assistant", [], TurnRules(speaker_labels=())).keep
    with pytest.raises(FieldError, match=r"0 \(off\)"):
        UltraChatConfig(loop_repeats=1)


# --- the paper's steps: personas and content-type routing (issue 24 §2) ------------------

def _run(**uc) -> RunConfig:
    return RunConfig(recipe="ultrachat", output_dir="out",
                     ultrachat=UltraChatConfig(**uc))  # type: ignore[arg-type]


def test_each_dialogue_gets_a_seeded_persona_in_its_user_prompt():
    personas = ("A retired sailor who likes short answers.", "A chemistry student.",
                "A nurse on night shifts.")
    cfg = _run(personas=personas, min_rounds=2, max_rounds=2)
    rows = steps.given_rows([f"How do tides work, part {i}?" for i in range(12)],
                            steps.STAGE_QUESTIONS, steps.WORLD)
    drawn = [dialogue.start(r, cfg, steps.read_personas(cfg)).persona for r in rows]
    assert set(drawn) == set(personas)  # every persona used over 12 dialogues
    assert drawn == [dialogue.start(r, cfg, personas).persona for r in rows]  # seeded
    d = dialogue.start(rows[0], cfg, personas)
    d = dialogue.judge_turn(GenerationOutcome(dialogue.assistant_step(d, 1, cfg, dialogue.budget(
        cfg)), Completion("The moon pulls the sea.", "stop", 0, 0)), TurnRules(), "m")
    request = dialogue.user_step(d, 2, cfg, dialogue.budget(cfg))
    assert d.persona in request.prompt and request.prompt_ref == "ultrachat/user_turn@v2"
    d = dialogue.judge_turn(GenerationOutcome(request, Completion("Why?", "stop", 0, 0)),
                            TurnRules(), "m")
    d = dialogue.judge_turn(GenerationOutcome(dialogue.assistant_step(d, 2, cfg, dialogue.budget(
        cfg)), Completion("Gravity.", "stop", 0, 0)), TurnRules(), "m")
    row, _ = dialogue.dialogue_row(d, GeneratorIdentity("m", "r", "m"), cfg)
    assert row.persona == d.persona and row.prompt_ref == "ultrachat/user_turn@v2"
    plain = dialogue.start(rows[0], _run())
    assert plain.persona is None  # no personas: the fixed role line, the v1 prompt
    assert dialogue.user_prompt(plain).ref == "ultrachat/user_turn@v1"


def test_personas_read_from_a_file(tmp_path):
    path = tmp_path / "p.txt"
    path.write_text("# who the user is\nA gardener.\n\nA pilot.\n")
    assert steps.read_personas(_run(personas=("A baker.",), personas_file=str(path))) == (
        "A baker.", "A gardener.", "A pilot.")


CONTENT_TYPES = """
types:
  - name: news
    keywords: [news, election]
    requests: [write a headline for it, summarize it in two sentences]
  - name: recipe
    keywords: [recipe, oven]
    requests: [turn it into a checklist]
default:
  name: general text
  requests: [summarize it]
"""


def test_passages_are_routed_to_a_content_type_and_its_requests(tmp_path):
    path = tmp_path / "types.yaml"
    path.write_text(CONTENT_TYPES)
    cfg = _run(materials=MaterialsConfig(content_types_file=str(path),
                                         match_fields=("input",), min_passage_words=1))
    routing = steps.read_routing(cfg)
    text = "Preheat the oven and mix the flour with water, then bake it for an hour."

    def passage(url: str) -> InstructionRecord:
        record = InstructionRecord(id=url, content_hash="h", recipe="filter", stage="input",
                                   round=0, instruction=text, input=url)
        row, verdict = steps.passage_row(record, cfg, routing)
        assert verdict.keep
        return row

    news, recipe = passage("https://example.org/news/1"), passage("https://x.org/recipe/2")
    other = passage("https://example.org/newsletter")  # "news" only on a word boundary
    assert (news.content_type, recipe.content_type, other.content_type) == (
        "news", "recipe", "general text")
    [request] = steps.material_requests(news, cfg, routing)
    assert "write a headline for it; summarize it in two sentences" in request.prompt
    assert request.prompt_ref == "ultrachat/material_instructions@v2"
    by_passage = _run(materials=MaterialsConfig(content_types_file=str(path),
                                                match_fields=("passage",), min_passage_words=1))
    assert steps.passage_row(InstructionRecord(
        id="x", content_hash="h", recipe="filter", stage="input", round=0, instruction=text),
        by_passage, routing)[0].content_type == "recipe"
    [plain] = steps.material_requests(news, _run(), None)  # no routing: the v1 prompt
    assert plain.prompt_ref == "ultrachat/material_instructions@v1"


def test_a_bad_content_types_file_names_the_entry(tmp_path):
    path = tmp_path / "types.yaml"
    path.write_text("types:\n  - name: news\n    keywords: [news]\ndefault: {name: x, "
                    "requests: [a]}\n")
    with pytest.raises(InputError, match=r"types\[0\]\.requests"):
        steps.read_routing(_run(materials=MaterialsConfig(content_types_file=str(path))))


def test_the_demo_shows_personas_and_routing():
    cfg = load_config(Path(__file__).parents[2] / "configs" / "ultrachat_demo.yaml")
    assert len(steps.read_personas(cfg)) >= 5
    routing = steps.read_routing(cfg)
    assert routing is not None and len(routing.types) >= 3
    assert cfg.ultrachat.materials.match_fields == ("passage",)


# --- statistics: topic diversity ----------------------------------------------------------

def test_topic_diversity_is_the_mean_pairwise_cosine_distance():
    texts = ["How do tides work?", "Write a poem about autumn.", "How do tides form?",
             "Explain compound interest to a child."]
    vectors = trigram_embed(texts)
    brute = [1 - float(vectors[i] @ vectors[j]) for i in range(4) for j in range(4) if i != j]
    mean = round(sum(brute) / 12, 4)
    assert dialogue_stats.topic_diversity(vectors.sum(axis=0).tolist(), 4) == mean
    assert dialogue_stats.topic_diversity([1.0, 0.0], 1) is None
    same = trigram_embed(["tides"] * 3)
    assert dialogue_stats.topic_diversity(same.sum(axis=0).tolist(), 3) == 0.0


def test_the_report_has_topic_diversity_or_says_why_not(monkeypatch):
    numbers = DialogueNumbers(2, 6, 12, 6, 30, 6, 60, 20.0)
    vectors = trigram_embed(["How do tides work?", "Write a poem about autumn."])
    report = build_report(None, numbers, {}, [], [], [], [], [],
                          topics=(vectors.sum(axis=0).tolist(), 2), topic_model="char-trigram")
    assert 0 < report["topic_diversity"] <= 1 and report["topic_embedding"] == "char-trigram"
    assert ["topic diversity", report["topic_diversity"]] in report["summary"]
    monkeypatch.setitem(REQUIRES, "char-trigram", ("no_such_module_for_this_test",))
    note = stats.missing_embedder("char-trigram")
    assert note is not None and "no_such_module_for_this_test" in note
    report = build_report(None, numbers, {}, [], [], [], [], [], topic_note=note)
    assert report["topic_diversity"] is None and report["topic_diversity_note"] == note
    assert UltraChatConfig().topic_embedding == "all-minilm-l6-v2"  # the MiniLM #InsTag uses
    one = build_report(None, numbers, {}, [], [], [], [], [],
                       topics=(vectors[0].tolist(), 1), topic_model="char-trigram")
    assert one["topic_diversity"] is None and "needs two" in one["topic_diversity_note"]


# --- the judge and the classifier rate every reply of a dialogue ---------------------------

JUDGED = ("How do tides work?", "The moon pulls the sea.", "And the sun?",
          "Bananas are yellow.")


def test_the_judge_rates_every_reply_and_the_worst_decides():
    from filters.quality import score_verdict
    from filters.quality_judge import JudgeAnswer
    from pipelines.settings import LlmJudgeConfig
    from pipelines.transforms.quality import _attach_judgement, judge_key, judge_requests

    row = _dialogue_row(*JUDGED)
    requests = judge_requests(row, LlmJudgeConfig(enabled=True), 0, "llm_judge")
    assert [r.context[1] for r in requests] == ["turn 2 (assistant)", "turn 4 (assistant)"]
    assert {r.context[0] for r in requests} == {judge_key(row)}  # joined back by row
    assert "Bananas are yellow." in requests[1].prompt
    assert "And the sun?" in requests[1].prompt and "The moon pulls" in requests[1].prompt
    answers = [("turn 2 (assistant)", JudgeAnswer(5, "right")),
               ("turn 4 (assistant)", JudgeAnswer(1, "off-topic"))]
    [scored] = _attach_judgement(("d", {"record": [row], "answer": answers}), "llm_judge")
    assert dict(scored.scores)["llm_judge"] == 1.0
    assert dict(scored.scores)["llm_judge/turn 4 (assistant)"] == 1.0
    assert scored.judge_rationale == "turn 4 (assistant): off-topic"
    verdict = score_verdict(scored, "llm_judge", 3, None)
    assert verdict.reason == Reason.SCORE_BELOW_MIN and "at turn 4 (assistant)" in verdict.detail
    [partial] = _attach_judgement(("d", {"record": [row], "answer": answers[:1]}), "llm_judge")
    assert partial.scores is None  # one reply unjudged: no score (missing_score later)


def test_the_classifier_rates_every_reply(tmp_path):
    from filters.quality_classifier import Labelled, save_classifier, train_classifier
    from pipelines.transforms.quality import _ClassifyFn

    good = [("How do tides work?", "", "The moon pulls the sea."),
            ("And the sun?", "", "The sun pulls the sea too, less."),
            ("Name a planet.", "", "Mars is a planet.")]
    bad = [(p, "", good[(i + 1) % 3][2]) for i, (p, _, _) in enumerate(good)]
    save_classifier(train_classifier([Labelled(*g, 1) for g in good] +
                                     [Labelled(*b, 0) for b in bad], "char-trigram"),
                    tmp_path / "m")
    fn = _ClassifyFn(str(tmp_path / "m"), "classifier")
    fn.setup()
    row = _dialogue_row("How do tides work?", "The moon pulls the sea.", "And the sun?",
                        "Mars is a planet.")
    [scored] = fn.process([row])
    scores = dict(scored.scores)
    assert scores["classifier"] == scores["classifier/turn 4 (assistant)"]
    assert scores["classifier/turn 4 (assistant)"] < scores["classifier/turn 2 (assistant)"]
