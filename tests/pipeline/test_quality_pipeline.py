"""Quality scoring in real runs (FnApiRunner): scorers add scores and drop nothing, score
filters route with a reason and the score, the chain runs in the configured order, and every
step's counts reach the manifest, the report and the card."""

from __future__ import annotations

import json

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to
from helpers import read_rows
from quality_fakes import ScriptedJudge

from filters.quality import score_of
from filters.quality_classifier import (
    Labelled,
    load_classifier,
    save_classifier,
    train_classifier,
)
from filters.text_stats import TEXT_STATS
from pipelines.config import RunConfig
from pipelines.errors import InputError
from pipelines.generators.backends import GeneratorIdentity
from pipelines.generators.handler import GeneratorModelHandler
from pipelines.run import run
from pipelines.settings import (
    CacheConfig,
    ClassifierConfig,
    FiltersConfig,
    GeneratorConfig,
    InputConfig,
    LlmJudgeConfig,
    NoveltyFilterConfig,
    ScoreFilterConfig,
    ScorersConfig,
    TextStatsConfig,
)
from pipelines.transforms.quality import JudgeModel, LlmJudgeScorer, ScoreFilter, TextStatsScorer
from schemas import InstructionRecord, from_row

ROWS = [
    {"instruction": "Name three primary colors.", "input": "", "output": "Red, yellow, blue."},
    {"instruction": "Name three primary colors.", "input": "", "output": "Red, blue, yellow."},
    {"instruction": "Explain tides.", "input": "",
     "output": "Tides are caused by the moon and the sun pulling on the"},  # unfinished
    {"instruction": "Repeat after me.", "input": "",
     "output": "yes we can yes we can yes we can yes we can."},  # repetitive
    {"instruction": "Translate to French.", "input": "cat", "output": "chat"},
]


def _record(i: int, output: str) -> InstructionRecord:
    return InstructionRecord(id=f"r{i}", content_hash=f"h{i}", recipe="filter", stage="input",
                             round=0, instruction="Say something.", output=output)


def test_score_filter_routes_with_reason_and_score():
    records = [_record(0, "A complete sentence here, ending well."),
               _record(1, "A sentence that stops in the middle of a"),
               _record(2, "")]
    with beam.Pipeline(runner="FnApiRunner") as p:
        scored = p | beam.Create(records) | TextStatsScorer()
        routed = scored | ScoreFilter("unfinished_sentence", maximum=0.0)
        assert_that(routed.kept | "KeptIds" >> beam.Map(lambda r: r.id), equal_to(["r0"]),
                    label="kept")
        assert_that(routed.rejected | beam.Map(lambda r: (r.record.id, r.reason, r.score,
                                                          r.filter_name)),
                    equal_to([("r1", "score_above_max", 1.0, "score:unfinished_sentence"),
                              ("r2", "score_above_max", 1.0, "score:unfinished_sentence")]),
                    label="rejected")


def _run(tmp_path, name: str, filters: FiltersConfig):
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    cfg = RunConfig(recipe="filter", output_dir=str(tmp_path / name),
                    input=InputConfig(path=str(path)), filters=filters, audit_per_source=0)
    return run(cfg)


STATS = ScorersConfig(text_stats=TextStatsConfig(enabled=True))
WINDOWS = (ScoreFilterConfig("unfinished_sentence", max=0.0),
           ScoreFilterConfig("repeated_ngram_share", max=0.3))


def test_chain_default_order_scores_every_row_and_counts_every_step(tmp_path):
    result = _run(tmp_path, "out", FiltersConfig(
        scorers=STATS, score_filters=WINDOWS, novelty=NoveltyFilterConfig(enabled=True)))
    out, stages = result.output_dir, result.manifest["stages"]
    kept = read_rows(out, "data")
    assert sorted(r["output"] for r in kept) == ["Red, yellow, blue.", "chat"]
    assert all(len(r["scores"]) == 4 for r in kept)
    rejected = {(r["output"][:8], r["reason"], r["filter_stage"])
                for r in read_rows(out, "rejected")}
    assert rejected == {
        ("Tides ar", "score_above_max", "score_filter/unfinished_sentence"),
        ("yes we c", "score_above_max", "score_filter/repeated_ngram_share"),
        ("Red, blu", "not_novel", "dedup_novelty")}
    assert stages["text_stats"]["produced"] == stages["text_stats"]["kept"] == 5
    assert stages["score_filter/unfinished_sentence"]["produced"] == 5
    assert stages["score_filter/repeated_ngram_share"]["produced"] == 4
    assert stages["dedup_novelty"]["produced"] == 3  # after the score filters
    assert all(c["holds"] for c in result.manifest["accounting"])
    card = (out / "README.md").read_text()
    report = (out / "report.html").read_text()
    for stage in ("text_stats", "score_filter/unfinished_sentence", "dedup_novelty"):
        assert stage in card and stage in report, stage


def test_chain_runs_in_the_configured_order(tmp_path):
    """Novelty first: the score filters then see only the novel rows."""
    result = _run(tmp_path, "out", FiltersConfig(
        scorers=STATS, score_filters=WINDOWS, novelty=NoveltyFilterConfig(enabled=True),
        order=("novelty", "rules", "scorers", "score_filters")))
    stages = result.manifest["stages"]
    assert stages["dedup_novelty"]["produced"] == 5
    assert stages["rules"]["produced"] == stages["text_stats"]["produced"] == 4
    assert stages["score_filter/unfinished_sentence"]["produced"] == 4
    kept = read_rows(result.output_dir, "data")
    assert sorted(r["output"] for r in kept) == ["Red, yellow, blue.", "chat"]
    scores = {r["output"]: dict((s["name"], s["value"]) for s in r["scores"]) for r in kept}
    assert scores["chat"]["output_prompt_ratio"] == len("chat") / len("Translate to French.cat")


def test_scores_survive_a_round_trip_through_the_output(tmp_path):
    result = _run(tmp_path, "out", FiltersConfig(scorers=STATS))
    rows = read_rows(result.output_dir, "data")
    records = [from_row(InstructionRecord, row) for row in rows]
    assert all(score_of(r, "non_ascii_share") == 0.0 for r in records)
    assert [name for name, _ in records[0].scores or ()] == list(TEXT_STATS)


# --- the LLM judge --------------------------------------------------------------------------

JUDGED = [
    {"instruction": "Name a red fruit.", "input": "", "output": "An apple."},
    {"instruction": "Explain tides.", "input": "", "output": "Something vague. [score 2]"},
    {"instruction": "Add 2 and 2.", "input": "", "output": "4 [score 4]"},
    {"instruction": "Say hi.", "input": "", "output": "GARBLE"},
]


def _judge_run(tmp_path, base_url: str, name: str = "out", cache: bool = False, **filters):
    path = tmp_path / "judged.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in JUDGED))
    chain = dict(scorers=ScorersConfig(llm_judge=LlmJudgeConfig(enabled=True)),
                 score_filters=(ScoreFilterConfig("llm_judge"),)) | filters
    cfg = RunConfig(
        recipe="filter", output_dir=str(tmp_path / name), input=InputConfig(path=str(path)),
        generator=GeneratorConfig(backend="openai", base_url=base_url, model="scripted",
                                  max_concurrency=4, timeout_s=5.0, max_attempts=2,
                                  backoff_s=0.01, max_backoff_s=0.02),
        filters=FiltersConfig(**chain), audit_per_source=0,
        cache=CacheConfig(enabled=cache, dir=str(tmp_path / "cache")),
        max_failure_ratio=0.5)
    return run(cfg)


@pytest.fixture
def judge():
    server = ScriptedJudge()
    server.start()
    yield server
    server.stop()


def test_llm_judge_scores_rows_and_the_score_filter_thresholds(judge, tmp_path):
    result = _judge_run(tmp_path, judge.base_url)
    out, stages = result.output_dir, result.manifest["stages"]
    kept = read_rows(out, "data")
    assert sorted((r["output"], s["value"]) for r in kept for s in r["scores"]) == [
        ("4 [score 4]", 4.0), ("An apple.", 5.0)]
    assert all(r["judge_rationale"].startswith("Scripted rating") for r in kept)
    rejected = {r["output"]: (r["reason"], r["score"]) for r in read_rows(out, "rejected")}
    assert rejected == {"Something vague. [score 2]": ("score_below_min", 2.0),
                        "GARBLE": ("missing_score", None)}
    # The unparsable answer is a dead letter that keeps the raw text.
    failed = read_rows(out, "failed")
    assert len(failed) == 1 and failed[0]["stage"] == "llm_judge_answer"
    assert failed[0]["error_class"] == "unparsable_response"
    assert "no JSON object" in failed[0]["message"]
    assert "four-ish" in failed[0]["message"]
    assert stages["llm_judge"]["in"] == stages["llm_judge"]["ok"] == 4
    assert stages["llm_judge"]["produced"] == stages["llm_judge"]["kept"] == 4
    assert (stages["llm_judge_answer"]["ok"], stages["llm_judge_answer"]["failed"]) == (3, 1)
    assert all(c["holds"] for c in result.manifest["accounting"])
    # Greedy, JSON-schema decoded, through the chat API.
    body = judge.bodies[0]
    assert body["temperature"] == 0.0 and "messages" in body
    assert body["structured_outputs"]["json"]["properties"]["score"]["maximum"] == 5


def test_llm_judge_rows_sharing_an_id_each_get_their_own_score(judge):
    """The answer is joined back by row (id and text), not by id alone: two rows with one id
    used to both get one of the two scores."""
    cfg = GeneratorConfig(backend="openai", base_url=judge.base_url, model="scripted",
                          max_concurrency=2, timeout_s=5.0, max_attempts=1)
    identity = GeneratorIdentity("scripted", "r", "scripted")
    model = JudgeModel(GeneratorModelHandler(cfg, identity, None), identity, "filter", 0)
    rows = [_record(1, "Fine. [score 2]"), _record(1, "Great. [score 5]"),
            _record(1, "Great. [score 5]"), _record(2, "Other. [score 3]")]
    with beam.Pipeline() as p:
        scored = (p | beam.Create(rows)
                  | LlmJudgeScorer(model, LlmJudgeConfig(enabled=True))).records
        assert_that(scored | beam.Map(lambda r: (r.id, r.output, score_of(r, "llm_judge"))),
                    equal_to([("r1", "Fine. [score 2]", 2.0), ("r1", "Great. [score 5]", 5.0),
                              ("r1", "Great. [score 5]", 5.0), ("r2", "Other. [score 3]", 3.0)]))


def test_llm_judge_non_finite_scores_are_dead_letters_not_a_crash(judge):
    """`{"score": NaN}` (or Infinity, 1e999) used to raise in the parser and end the run."""
    cfg = GeneratorConfig(backend="openai", base_url=judge.base_url, model="scripted",
                          max_concurrency=2, timeout_s=5.0, max_attempts=1)
    identity = GeneratorIdentity("scripted", "r", "scripted")
    model = JudgeModel(GeneratorModelHandler(cfg, identity, None), identity, "filter", 0)
    rows = [_record(1, "A. [score NaN]"), _record(2, "B. [score Infinity]"),
            _record(3, "C. [score 1e999]"), _record(4, "D. [score 4]")]
    with beam.Pipeline() as p:
        scored = (p | beam.Create(rows) | LlmJudgeScorer(model, LlmJudgeConfig(enabled=True)))
        assert_that(scored.records | beam.Map(lambda r: (r.id, score_of(r, "llm_judge"))),
                    equal_to([("r1", None), ("r2", None), ("r3", None), ("r4", 4.0)]),
                    label="Scores")
        assert_that(scored.failed | beam.Map(lambda f: (f.subject_id, f.error_class,
                                                        f.message.split("raw answer: ")[1])),
                    equal_to([("r1", "unparsable_response", '{"rationale": "Odd.", "score": NaN}'),
                              ("r2", "unparsable_response",
                               '{"rationale": "Odd.", "score": Infinity}'),
                              ("r3", "unparsable_response",
                               '{"rationale": "Odd.", "score": 1e999}')]), label="Failed")


def test_llm_judge_answers_come_from_the_cache_on_a_rerun(judge, tmp_path):
    first = _judge_run(tmp_path, judge.base_url, "one", cache=True)
    calls = len(judge.bodies)
    second = _judge_run(tmp_path, judge.base_url, "two", cache=True)
    assert calls == 4 and len(judge.bodies) == calls  # no new calls
    assert read_rows(first.output_dir, "data") == read_rows(second.output_dir, "data")
    assert second.manifest["run"]["generator_usage"]["llm_judge"]["cache_hits"] == 4


def test_llm_judge_without_structured_output_sends_no_schema(judge, tmp_path):
    _judge_run(tmp_path, judge.base_url, scorers=ScorersConfig(
        llm_judge=LlmJudgeConfig(enabled=True, structured_output=False)))
    assert all("structured_outputs" not in b for b in judge.bodies)


# --- the learned classifier -----------------------------------------------------------------

def _trained(tmp_path) -> str:
    good = [("Name a red fruit.", "", "An apple is a red fruit."),
            ("Translate to French.", "cat", "chat"),
            ("Add two and three.", "", "Two plus three is five."),
            ("Name a planet.", "", "Mars is a planet.")]
    bad = [(i, x, good[(k + 1) % len(good)][2]) for k, (i, x, _) in enumerate(good)]
    rows = [Labelled(*r, 1) for r in good] + [Labelled(*r, 0) for r in bad]
    save_classifier(train_classifier(rows, "char-trigram"), tmp_path / "model")
    return str(tmp_path / "model")


def test_classifier_scores_in_the_chain_and_its_filter_routes(tmp_path):
    model_dir = _trained(tmp_path)
    rows = [{"instruction": "Name a planet.", "input": "", "output": "Mars is a planet."},
            {"instruction": "Name a planet.", "input": "", "output": "chat"}]
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = RunConfig(recipe="filter", output_dir=str(tmp_path / "out"),
                    input=InputConfig(path=str(path)), audit_per_source=0,
                    filters=FiltersConfig(
                        scorers=ScorersConfig(classifier=ClassifierConfig(
                            enabled=True, model_dir=model_dir)),
                        score_filters=(ScoreFilterConfig("classifier"),)))
    result = run(cfg)
    expected = dict(zip(("keep", "drop"), load_classifier(model_dir).score(
        [(r["instruction"], r["input"], r["output"]) for r in rows]), strict=True))
    kept = read_rows(result.output_dir, "data")
    rejected = read_rows(result.output_dir, "rejected")
    assert [r["output"] for r in kept] == ["Mars is a planet."]
    assert kept[0]["scores"] == [{"name": "classifier", "value": expected["keep"]}]
    assert [(r["reason"], r["score"]) for r in rejected] == [("score_below_min",
                                                              expected["drop"])]
    assert result.manifest["stages"]["classifier"]["produced"] == 2


def test_a_missing_classifier_is_one_error_before_anything_is_written(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text(json.dumps(ROWS[0]) + "\n")
    cfg = RunConfig(recipe="filter", output_dir=str(tmp_path / "out"),
                    input=InputConfig(path=str(path)),
                    filters=FiltersConfig(scorers=ScorersConfig(classifier=ClassifierConfig(
                        enabled=True, model_dir=str(tmp_path / "nowhere")))))
    with pytest.raises(InputError, match="classifier.model_dir: .*not a quality classifier"):
        run(cfg)
    assert not (tmp_path / "out").exists()
