"""Explore-Instruct's demo config end to end on a real vLLM CPU server (smoke-sized).

SmolLM2-135M extends and enriches the demo's rewriting tree; it follows the answer layout only
now and then, so the test checks the machinery (every answer kept or rejected with a reason,
the tree written in the paper's format and as Parquet, lineage on every row), not the text.
The run shares the session's SmolLM2 server.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import ROOT
from helpers import read_rows

from pipelines.config import load_config
from pipelines.run import run
from schemas import Reason
from schemas.tree_format import read_tree

pytestmark = pytest.mark.e2e

DEMO = ROOT / "configs" / "explore_instruct_demo.yaml"
SMOKE = {"explore_instruct.max_extend_attempts": 2, "explore_instruct.max_enrich_rounds": 1,
         "explore_instruct.enrich_nums": [0, 10, 5]}


def test_explore_demo_runs_on_a_real_model(tmp_path: Path, embedded_server):
    embedded_server("smollm2-135m")
    cfg = load_config(DEMO, {**SMOKE, "output_dir": str(tmp_path / "out"),
                             "cache.dir": str(tmp_path / "cache")})
    result = run(cfg)
    manifest, out = result.manifest, result.output_dir

    assert all(c["holds"] for c in manifest["accounting"]), manifest["accounting"]
    stages = manifest["stages"]
    # Root and the two given subtasks are extended, each in at most two attempts.
    assert 3 <= stages["explore_extend"]["in"] <= 2 * (3 + 2 * 3)
    assert stages["explore_enrich"]["in"] >= 2
    assert stages["explore_examples"]["produced"] > 0, "the model produced no examples"
    rejected = read_rows(out, "rejected")
    assert {r["reason"] for r in rejected} <= {r.value for r in Reason}

    nodes = sorted(read_rows(out, "nodes"), key=lambda r: r["level_order"])
    assert [n["task_name"] for n in nodes[:3]] == [
        "help_with_editing_text", "paraphrase", "grammar_correction"]
    assert max(n["depth"] for n in nodes) <= 2
    assert all(n["extend_requests"] <= 2 for n in nodes)
    tree = read_tree(out / "tree")
    assert [t.task_name for t in tree] == [n["task_name"] for n in nodes]
    summary = json.loads((out / "tree" / "summary.json").read_text())
    assert summary["total"]["nodes"] == len(nodes)

    paths = {n["id"]: n["path"] for n in nodes}
    for row in read_rows(out, "data"):
        assert row["node_path"] == paths[row["node_id"]]
        assert row["origin"] == "seed" or (
            row["generator"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
            and row["prompt_ref"].startswith("explore_instruct/"))
    usage = manifest["run"]["generator_usage"]
    assert usage["explore_extend"]["completion_tokens"] > 0
