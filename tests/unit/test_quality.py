"""Quality scoring's pure parts: text statistics, score windows, the judge's answers, and the
filter-chain config (order, score filters)."""

from __future__ import annotations

import dataclasses
import json

import pytest

from filters.judge_fit import ELISION_NOTE, elide, estimate_tokens, fit_fields
from filters.quality import score_of, score_verdict, with_scores
from filters.quality_judge import judge_schema, parse_judge_answer
from filters.text_stats import (
    non_ascii_share,
    output_prompt_ratio,
    repeated_ngram_share,
    text_stats,
    unfinished_sentence,
)
from pipelines.config import load_config
from pipelines.errors import InputError
from pipelines.settings import (
    ClassifierConfig,
    FieldError,
    FiltersConfig,
    LlmJudgeConfig,
    NoveltyFilterConfig,
    ScoreFilterConfig,
    ScorersConfig,
    TextStatsConfig,
)
from schemas import InstructionRecord, Reason

# --- text statistics ------------------------------------------------------------------------


def test_output_prompt_ratio_counts_stripped_characters():
    assert output_prompt_ratio("  abcd ", "ef", "abc") == pytest.approx(0.5)
    assert output_prompt_ratio("", "", "abc") == 3.0  # an empty prompt counts as one char


@pytest.mark.parametrize(("text", "share"), [
    ("", 0.0),
    ("one two", 0.0),  # fewer words than n: nothing to repeat
    ("a b c d e f", 0.0),
    ("go on go on go on", 2 / 4),  # 4 trigrams, the last 2 repeat the first 2
])
def test_repeated_ngram_share(text, share):
    assert repeated_ngram_share(text) == pytest.approx(share)


def test_repetition_is_case_insensitive_and_ignores_punctuation():
    assert repeated_ngram_share("I am here. i AM HERE!") == pytest.approx(1 / 4)


def test_non_ascii_share_ignores_whitespace():
    assert non_ascii_share("ab ", "  é") == pytest.approx(1 / 3)
    assert non_ascii_share("", " ") == 0.0


@pytest.mark.parametrize(("text", "unfinished"), [
    ("", 1.0),
    ("Positive", 0.0),  # a label is not a sentence
    ("The answer is forty two", 1.0),
    ("The capital of France is Paris.", 0.0),
    ("The capital of France is Paris and the", 1.0),
    ("Use this:\n```python\nprint('hi')\n```", 0.0),
    ("Here is a list of things:\n- apples and pears (ripe)", 0.0),
    ("这是一个完整的句子，我们在这里结束。", 0.0),
])
def test_unfinished_sentence(text, unfinished):
    assert unfinished_sentence(text) == unfinished


@pytest.mark.parametrize("text", [
    "The total number of items in the list is 42",
    "It was first released as part of version 3.11.2",
    "You can read more about it at https://example.com/docs/page",
    "| name | age | city |\n|---|---|---|\n| Ann | 31 | Oslo |\n| Bob | 42 | Rome |",
    "Have a wonderful day and enjoy it 😊",
    "Thanks a lot, see you all soon 👍🏽",
    "Here is the function you asked for:\n\n    def add(a, b):\n        return a + b",
])
def test_finished_answers_without_a_full_stop_are_not_unfinished(text):
    """Numbers, URLs, table rows, emoji and indented code end answers; they used to count as
    cut off."""
    assert unfinished_sentence(text) == 0.0


@pytest.mark.parametrize("text", [
    "The capital of France is Paris and the",
    "Here is the function you asked for:\n    def add(a, b):\n        return a +",
    "See the page at https://example.com/docs and then",
])
def test_cut_answers_stay_unfinished(text):
    assert unfinished_sentence(text) == 1.0


def test_text_stats_names_every_statistic_in_order():
    names = [n for n, _ in text_stats("Say hi.", "", "Hi there, how are you today?")]
    assert names == ["output_prompt_ratio", "repeated_ngram_share", "non_ascii_share",
                     "unfinished_sentence"]


# --- scores and windows ---------------------------------------------------------------------

def _record(**kw) -> InstructionRecord:
    return InstructionRecord(id="r", content_hash="h", recipe="filter", stage="input", round=0,
                             instruction="Do x.", **kw)


def test_with_scores_adds_and_replaces_by_name():
    r = with_scores(_record(), [("a", 1), ("b", 2.5)])
    r = with_scores(r, [("a", 3.0)], judge_rationale="why")
    assert r.scores == (("b", 2.5), ("a", 3.0)) and r.judge_rationale == "why"
    assert score_of(r, "a") == 3.0 and score_of(r, "c") is None


@pytest.mark.parametrize(("value", "lo", "hi", "reason"), [
    (4.0, 4.0, None, None),
    (3.0, 4.0, None, Reason.SCORE_BELOW_MIN),
    (0.9, None, 0.5, Reason.SCORE_ABOVE_MAX),
    (0.5, 0.0, 0.5, None),
    (None, 1.0, None, Reason.MISSING_SCORE),
    (float("nan"), 1.0, None, Reason.MISSING_SCORE),
])
def test_score_verdict(value, lo, hi, reason):
    record = _record() if value is None else with_scores(_record(), [("s", value)])
    verdict = score_verdict(record, "s", lo, hi)
    assert verdict.keep is (reason is None) and verdict.reason == reason
    if reason in (Reason.SCORE_BELOW_MIN, Reason.SCORE_ABOVE_MAX):
        assert verdict.score == value and "s" in verdict.detail


# --- the judge's answers --------------------------------------------------------------------

@pytest.mark.parametrize(("text", "score", "rationale"), [
    ('{"rationale": "Correct and clear.", "score": 5}', 5.0, "Correct and clear."),
    ('```json\n{"score": 4, "rationale": "Fine"}\n```', 4.0, "Fine"),
    ('Sure! {"rationale": "ok", "score": "3"} Hope it helps.', 3.0, "ok"),
    ('{"rationale": "two\\nlines  here", "score": 2.0}', 2.0, "two lines here"),
    ('{"score": 1}', 1.0, ""),
])
def test_judge_answers_that_parse(text, score, rationale):
    answer = parse_judge_answer(text, "stop", 5)
    assert answer.ok and answer.score == score and answer.rationale == rationale


@pytest.mark.parametrize(("text", "finish", "problem"), [
    ("I would rate it four.", "stop", "no JSON object"),
    ('{"rationale": "good", "score": ', "length", "cut at the length limit"),
    ('{"rationale": "good", "score": 6}', "stop", "not a whole number in 1..5"),
    ('{"rationale": "good", "score": 4.5}', "stop", "not a whole number"),
    ('{"rationale": "good", "score": "high"}', "stop", "no numeric 'score'"),
    ('{"rationale": "good", "score": true}', "stop", "no numeric 'score'"),
    ('{"score": 4} {"score": 5}', "stop", "invalid JSON"),
])
def test_judge_answers_that_do_not_parse_say_why(text, finish, problem):
    answer = parse_judge_answer(text, finish, 5)
    assert not answer.ok and problem in answer.problem


@pytest.mark.parametrize("score", ["NaN", "Infinity", "-Infinity", "1e999", '"nan"', '"inf"'])
def test_judge_scores_that_are_not_finite_are_unparsable_not_a_crash(score):
    """json reads NaN/Infinity/1e999 as floats; `int(inf)` used to raise and end the run."""
    answer = parse_judge_answer(f'{{"rationale": "ok", "score": {score}}}', "stop", 5)
    assert not answer.ok and "no numeric 'score'" in answer.problem


def test_judge_rationale_is_bounded():
    long = json.dumps({"rationale": "x" * 500, "score": 3})
    assert len(parse_judge_answer(long, "stop", 5, max_rationale_chars=40).rationale) == 40


def test_judge_schema_bounds_score_and_rationale():
    schema = judge_schema(10, 120)
    assert schema["properties"]["score"] == {"type": "integer", "minimum": 1, "maximum": 10}
    assert schema["properties"]["rationale"]["maxLength"] == 120
    assert list(schema["properties"]) == ["rationale", "score"]


def test_a_row_that_fits_is_sent_whole():
    fields = {"instruction": "Say hi.", "input": "", "output": "Hi! " * 2000}
    assert fit_fields(fields, 10_000) == (fields, False)


def test_a_long_row_is_cut_by_tokens_keeping_its_end_and_the_judge_is_told():
    """The old cut kept 3,000 characters and " [...]": the answer then looked unfinished,
    which the rubric scores 1. Now the short fields stay whole, the long one keeps its start
    and its end, and the gap says that the pipeline left text out."""
    answer = "Start of the answer. " + "More detail follows here. " * 2000 + "The end."
    fields = {"instruction": "Explain it at length.", "input": "", "output": answer}
    fitted, cut = fit_fields(fields, 3000)
    assert cut and fitted["instruction"] == fields["instruction"]
    out = fitted["output"]
    assert out.startswith("Start of the answer.") and out.endswith("The end.")
    assert "left out here by the data pipeline" in out and "not a flaw" in out
    assert sum(estimate_tokens(v) for v in fitted.values()) <= 3000
    assert estimate_tokens(out) > 2500  # the budget is used, not a fixed character cut


def test_elision_counts_tokens_not_characters():
    chinese = "这是一个很长的回答。" * 1000
    assert estimate_tokens(chinese) >= 2 * len(chinese)
    cut = elide(chinese, 500)
    assert estimate_tokens(cut) <= 500 and ELISION_NOTE.split("{n}")[0] in cut
    assert elide("short text", 500) == "short text"



# --- config: score filters and the chain order ----------------------------------------------

def test_score_filter_defaults_and_suggestions():
    assert ScoreFilterConfig("llm_judge").bounds() == (4.0, None)
    assert ScoreFilterConfig("classifier", max=0.2).bounds() == (None, 0.2)
    with pytest.raises(FieldError, match="did you mean 'llm_judge'"):
        ScoreFilterConfig("llm_judje")
    with pytest.raises(FieldError, match="no default"):
        ScoreFilterConfig("non_ascii_share")
    with pytest.raises(FieldError, match="<= max"):
        ScoreFilterConfig("classifier", min=0.8, max=0.2)


def _scorers(**on: bool) -> ScorersConfig:
    return ScorersConfig(text_stats=TextStatsConfig(enabled=on.get("text_stats", False)),
                         llm_judge=LlmJudgeConfig(enabled=on.get("llm_judge", False)),
                         classifier=ClassifierConfig(enabled=on.get("classifier", False),
                                                     model_dir="m"))


def test_default_order_runs_only_what_is_enabled():
    assert FiltersConfig().steps() == ("rules",)
    cfg = FiltersConfig(scorers=_scorers(text_stats=True, llm_judge=True),
                        score_filters=(ScoreFilterConfig("llm_judge"),),
                        novelty=NoveltyFilterConfig(enabled=True))
    assert cfg.steps() == ("rules", "text_stats", "llm_judge", "score_filters", "novelty")


def test_order_is_the_configs_order_and_may_leave_rules_out():
    cfg = FiltersConfig(scorers=_scorers(text_stats=True, classifier=True),
                        score_filters=(ScoreFilterConfig("unfinished_sentence", max=0.0),),
                        novelty=NoveltyFilterConfig(enabled=True),
                        order=("novelty", "text_stats", "score_filters", "classifier"))
    assert cfg.steps() == ("novelty", "text_stats", "score_filters", "classifier")


@pytest.mark.parametrize(("kw", "problem"), [
    ({"order": ("rules", "near-dup")}, "unknown step 'near-dup'; did you mean 'near_dup'?"),
    ({"order": ("rules", "scorers", "text_stats"), "scorers": _scorers(text_stats=True)},
     "lists 'text_stats' twice"),
    ({"order": ("rules",), "novelty": NoveltyFilterConfig(enabled=True)},
     "leaves out 'novelty', which is enabled"),
    ({"order": ("rules", "score_filters", "scorers"), "scorers": _scorers(llm_judge=True),
      "score_filters": (ScoreFilterConfig("llm_judge"),)},
     "needs scorers.llm_judge enabled and listed before score_filters"),
    ({"score_filters": (ScoreFilterConfig("classifier"),)},
     "needs scorers.classifier enabled"),
])
def test_bad_orders_are_one_clear_error(kw, problem):
    with pytest.raises(FieldError) as err:
        FiltersConfig(**kw)
    assert problem in str(err.value)


def test_an_unknown_step_in_yaml_names_file_line_and_suggests(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("recipe: filter\noutput_dir: out\ninput: {path: x.jsonl}\nfilters:\n"
                    "  order: [rules, scorer, novelty]\n")
    with pytest.raises(InputError, match=r"c.yaml:5: field 'filters.order' unknown step "
                                         r"'scorer'; did you mean 'scorers'\?"):
        load_config(path)


def test_score_filters_load_from_yaml(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("recipe: filter\noutput_dir: out\ninput: {path: x.jsonl}\nfilters:\n"
                    "  scorers: {text_stats: {enabled: true}}\n"
                    "  score_filters:\n    - {score: repeated_ngram_share, max: 0.3}\n")
    cfg = load_config(path)
    assert cfg.filters.score_filters == (ScoreFilterConfig("repeated_ngram_share", max=0.3),)
    assert cfg.filters.steps() == ("rules", "text_stats", "score_filters")


def test_the_judge_request_sends_a_long_answer_whole_when_it_fits_the_context():
    from pipelines.settings import LlmJudgeConfig
    from pipelines.transforms.quality import judge_request

    answer = "The answer begins. " + "It explains more. " * 300 + "It ends here."  # 5.4K chars
    record = InstructionRecord(id="r", content_hash="h", recipe="filter", stage="input",
                               round=0, instruction="Explain.", output=answer)
    prompt = judge_request(record, LlmJudgeConfig(enabled=True), 0, "llm_judge").prompt
    assert prompt.rstrip().endswith("It ends here.") and "[...]" not in prompt
    huge = dataclasses.replace(record, output=answer * 20)  # ~108K chars: cannot fit 4,096
    prompt = judge_request(huge, LlmJudgeConfig(enabled=True), 0, "llm_judge").prompt
    assert prompt.rstrip().endswith("It ends here.")
    assert "left out here by the data pipeline" in prompt
    assert estimate_tokens(prompt) <= 4096 - 128


def test_the_judges_context_comes_from_the_config_or_the_server_it_runs_on():
    from pipelines.generators.backends import served_context
    from pipelines.settings import GeneratorConfig
    from pipelines.transforms.quality import judge_request

    assert served_context(GeneratorConfig()) == 4096  # DEFAULT_SERVER_ARGS
    big = GeneratorConfig(server_args=("--max-model-len", "32768"))
    assert served_context(big) == 32768
    assert served_context(GeneratorConfig(backend="openai", base_url="http://x",
                                          model="m")) is None
    answer = "Begin. " + "Words that go on. " * 2500 + "Done."  # ~45K chars: > 4,096 tokens
    record = InstructionRecord(id="r", content_hash="h", recipe="filter", stage="input",
                               round=0, instruction="Explain.", output=answer)
    wide = LlmJudgeConfig(enabled=True, context_tokens=32768)
    assert judge_request(record, wide, 0, "s").prompt.rstrip().endswith(answer)
    narrow = judge_request(record, LlmJudgeConfig(enabled=True), 0, "s").prompt
    assert answer not in narrow and "left out here" in narrow
