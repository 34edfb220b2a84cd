"""Ensemble-Instruct's demo config end to end on real vLLM CPU servers (smoke-sized).

SmolLM2-135M generates; Gemma-3-270M and greedy SmolLM2 on the generator's own server answer
every instance. The run shares the session's servers (one per model, started by the
`embedded_server` fixture with the default arguments the demo uses).
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

pytestmark = pytest.mark.e2e

DEMO = ROOT / "configs" / "ensemble_instruct_demo.yaml"
SMOKE = {"ensemble_instruct.type_a.num_instructions": 6,
         "ensemble_instruct.type_a.max_prompts": 4,
         "ensemble_instruct.type_b.num_instructions": 4,
         "ensemble_instruct.type_b.max_prompts": 4}


def test_ensemble_demo_runs_on_real_models(tmp_path: Path, embedded_server):
    embedded_server("smollm2-135m")
    embedded_server("gemma3-270m")
    cfg = load_config(DEMO, {**SMOKE, "output_dir": str(tmp_path / "out"),
                             "cache.dir": str(tmp_path / "cache")})
    result = run(cfg)
    manifest, out = result.manifest, result.output_dir

    assert all(c["holds"] for c in manifest["accounting"]), manifest["accounting"]
    stages = manifest["stages"]
    assert 2 <= stages["instruction_gen"]["in"] <= 8  # at most four prompts per type
    assert stages["instruction_gen"]["produced"] > 0, "the model produced no instructions"
    samples = stages["instance_gen"].get("kept", 0)
    for name in ("gemma3-270m", "smollm2-greedy"):
        assert stages[f"extra_output/{name}"]["in"] == samples
    if samples:
        ens = stages["ensemble"]
        assert ens["in"] == samples and ens["produced"] == ens["ok"]
        assert sum(ens.get("kept_by", {}).values()) == ens["kept"]
    rejected = read_rows(out, "rejected")
    assert {r["reason"] for r in rejected} <= {r.value for r in Reason}
    for row in read_rows(out, "data"):
        record = json.loads(row["ensemble"])
        models = [c["model"] for c in record["candidates"]]
        assert models == ["HuggingFaceTB/SmolLM2-135M-Instruct", "google/gemma-3-270m",
                          "HuggingFaceTB/SmolLM2-135M-Instruct"]
        assert record["candidates"][2]["revision"] == row["generator_revision"]
    usage = manifest["run"]["generator_usage"]
    assert usage["instruction_gen"]["completion_tokens"] > 0
