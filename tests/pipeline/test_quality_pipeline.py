"""Quality scoring in real runs (FnApiRunner): scorers add scores and drop nothing, score
filters route with a reason and the score, the chain runs in the configured order, and every
step's counts reach the manifest, the report and the card."""

from __future__ import annotations

import json

import apache_beam as beam
from apache_beam.testing.util import assert_that, equal_to
from helpers import read_rows

from filters.quality import score_of
from filters.text_stats import TEXT_STATS
from pipelines.config import RunConfig
from pipelines.run import run
from pipelines.settings import (
    FiltersConfig,
    InputConfig,
    NoveltyFilterConfig,
    ScoreFilterConfig,
    ScorersConfig,
    TextStatsConfig,
)
from pipelines.transforms.quality import ScoreFilter, TextStatsScorer
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
