"""Self-Instruct end to end on a real vLLM CPU server with the embedded SmolLM2-135M.

This is also the smoke run of every shipped demo config: each one runs through the real
pipeline with a small prompt budget, so the suite stays fast. The run finds the session's
server for the same model and arguments (the one `make run` would start) and shares it; the session
fixture checks that no server process is left at the end.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import ROOT
from helpers import read_rows

from pipelines.config import load_config
from pipelines.run import run
from schemas import Reason

pytestmark = pytest.mark.e2e

DEMO_CONFIGS = sorted((ROOT / "configs").glob("*_demo.yaml"))
# Other recipes' demos are smoke-run by their own e2e tests (e.g. test_ensemble_instruct_vllm).
SELF_INSTRUCT_DEMOS = [p for p in DEMO_CONFIGS
                       if yaml.safe_load(p.read_text(encoding="utf-8")).get("recipe")
                       == "self_instruct"]
SMOKE = {"self_instruct.max_prompts": 12, "self_instruct.num_instructions": 12}


def test_demo_configs_exist():
    assert DEMO_CONFIGS, "the project ships at least one demo config"


@pytest.mark.parametrize("config_path", SELF_INSTRUCT_DEMOS, ids=lambda p: p.stem)
def test_demo_config_runs_on_a_real_model(config_path: Path, tmp_path: Path, embedded_server):
    embedded_server("smollm2-135m")
    cfg = load_config(config_path, {**SMOKE, "output_dir": str(tmp_path / "out"),
                                    "cache.dir": str(tmp_path / "cache")})
    result = run(cfg)
    out = result.output_dir
    manifest = result.manifest

    assert all(c["holds"] for c in manifest["accounting"]), manifest["accounting"]
    stages = manifest["stages"]
    asked = stages["instruction_gen"]["in"]
    assert 1 <= asked <= 12  # the budget, or fewer once the target was met
    assert stages["instruction_gen"]["produced"] > 0, "the model produced no instructions"
    assert stages["clf_identify"]["in"] == stages["novelty"]["kept"]

    instructions = read_rows(out, "instructions")
    for row in instructions:
        assert row["generator"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
        assert row["generator_revision"] and row["prompt_ref"].startswith("self_instruct/")
        assert row["seed"] is not None and row["sampling"] and row["request_id"]
    rejected = read_rows(out, "rejected")
    assert {r["reason"] for r in rejected} <= {r.value for r in Reason}
    assert manifest["rows"]["instructions"] == len(instructions)
    usage = manifest["run"]["generator_usage"]["instruction_gen"]
    # Every decided prompt was paid for; prompts still in flight when the target was met are
    # paid for and cached too, but never decided (the streaming loop), within the budget.
    paid = usage["calls"] + usage.get("cache_hits", 0)
    assert asked <= paid <= SMOKE["self_instruct.max_prompts"]
    assert usage["completion_tokens"] > 0
