"""The LLM judge end to end on a real vLLM CPU server: the `filter` recipe starts the embedded
SmolLM2-135M, which rates a handful of rows with JSON-schema decoding; every row is judged,
scores are whole numbers in range, and the accounting holds. Shares the session's server.
How well a 135M model judges is measured in bench/quality_bench.py, not asserted here."""

from __future__ import annotations

import json

import pytest
from helpers import read_rows

from pipelines.config import RunConfig
from pipelines.run import run
from pipelines.settings import (
    CacheConfig,
    FiltersConfig,
    InputConfig,
    LlmJudgeConfig,
    ScoreFilterConfig,
    ScorersConfig,
)

pytestmark = pytest.mark.e2e

ROWS = [
    {"instruction": "Name the capital of France.", "input": "", "output": "Paris."},
    {"instruction": "Name the capital of France.", "input": "",
     "output": "Bananas are rich in potassium."},
    {"instruction": "Translate to Spanish.", "input": "Good morning", "output": "Buenos días."},
    {"instruction": "Add 12 and 30.", "input": "", "output": "12 + 30 = 42."},
    {"instruction": "Explain why the sky is blue.", "input": "",
     "output": "Sunlight is scattered by the"},
]


def test_embedded_model_judges_rows_with_structured_output(tmp_path, embedded_server):
    embedded_server("smollm2-135m")
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    cfg = RunConfig(
        recipe="filter", output_dir=str(tmp_path / "out"), input=InputConfig(path=str(path)),
        cache=CacheConfig(dir=str(tmp_path / "cache")), audit_per_source=0,
        filters=FiltersConfig(scorers=ScorersConfig(llm_judge=LlmJudgeConfig(enabled=True)),
                              score_filters=(ScoreFilterConfig("llm_judge", min=1.0),)))
    result = run(cfg)
    manifest, out = result.manifest, result.output_dir
    assert all(c["holds"] for c in manifest["accounting"]), manifest["accounting"]
    judge, answers = manifest["stages"]["llm_judge"], manifest["stages"]["llm_judge_answer"]
    assert judge["in"] == judge["ok"] == judge["produced"] == len(ROWS)
    assert answers["ok"] == len(ROWS), read_rows(out, "failed")  # the schema keeps it parseable
    kept = read_rows(out, "data")
    assert len(kept) == len(ROWS)
    for row in kept:
        (score,) = [s["value"] for s in row["scores"] if s["name"] == "llm_judge"]
        assert score in (1.0, 2.0, 3.0, 4.0, 5.0) and row["judge_rationale"] is not None
