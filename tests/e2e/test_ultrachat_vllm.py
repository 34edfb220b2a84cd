"""UltraChat's demo config end to end on a real vLLM CPU server (smoke-sized).

SmolLM2-135M writes opening lines for one topic, then a couple of short dialogues in which it
plays both the user (with the user prompt) and the assistant, turn by turn through the chat
API with the whole history. The test checks the machinery (every dialogue kept, rejected with
a reason or failed; turns alternate; lineage and per-turn provenance; the statistics), not the
text. The run shares the session's SmolLM2 server.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import ROOT
from helpers import read_rows

from pipelines.config import load_config
from pipelines.run import run
from schemas import Reason

pytestmark = pytest.mark.e2e

DEMO = ROOT / "configs" / "ultrachat_demo.yaml"
SMOKE = {"ultrachat.world.meta_topics": ["Science and nature"],
         "ultrachat.world.subtopics_per_topic": 0, "ultrachat.world.questions_per_topic": 2,
         "ultrachat.world.derived_per_question": 0, "ultrachat.world.entities": [],
         "ultrachat.writing.material_types": ["email"],
         "ultrachat.writing.instructions_per_type": 2, "ultrachat.writing.refine": False,
         "input": None, "ultrachat.min_rounds": 2,
         "ultrachat.max_rounds": 2, "ultrachat.user_sampling.max_tokens": 32,
         "ultrachat.assistant_sampling.max_tokens": 48, "max_failure_ratio": 0.5}
MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"


def test_ultrachat_demo_runs_on_a_real_model(tmp_path: Path, embedded_server):
    embedded_server("smollm2-135m")
    cfg = load_config(DEMO, {**SMOKE, "output_dir": str(tmp_path / "out"),
                             "cache.dir": str(tmp_path / "cache")})
    result = run(cfg)
    manifest, out = result.manifest, result.output_dir

    assert all(c["holds"] for c in manifest["accounting"]), manifest["accounting"]
    stages = manifest["stages"]
    assert stages["ultrachat_questions"]["in"] == stages["ultrachat_writing"]["in"] == 1
    selected = stages.get("ultrachat_opening_sample", {}).get("kept", 0)
    assert selected >= 1, "no opening line survived"
    # every dialogue ends once: a row (kept or rejected), or one failed turn
    failed = sum(stages.get(s, {}).get("failed", 0)
                 for s in ("ultrachat_user_turn", "ultrachat_assistant_turn"))
    assert stages["ultrachat_dialogues"]["produced"] + failed == selected
    rejected = read_rows(out, "rejected")
    assert {r["reason"] for r in rejected} <= {r.value for r in Reason}
    for row in read_rows(out, "data"):
        roles = [m["role"] for m in row["messages"]]
        assert roles == ["user", "assistant"] * row["rounds"] and 1 <= row["rounds"] <= 2
        assert row["turn_generators"][1:] == [MODEL] * (len(roles) - 1)
        assert (row["sector"], row["topic"]) in {("world", "Science and nature"),
                                                 ("writing", "email")}
        assert row["opening_id"] and row["dialogue_end"] in ("rounds_reached", "context_full")
    report = manifest["reports"]["ultrachat"]
    assert report["dialogues"] == manifest["rows"]["data"]
    # the demo's personas reach the rows; topic diversity is a figure, or says why not
    assert all(row["persona"] for row in read_rows(out, "data"))
    assert "topic_diversity" in report
    assert report["topic_diversity"] is not None or report.get("topic_diversity_note")
    usage = manifest["run"]["generator_usage"]["ultrachat_assistant_turn"]
    assert usage["completion_tokens"] > 0
