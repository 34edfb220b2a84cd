"""Chained recipes (`then:`) in one Beam job: Self-Instruct -> the filter chain -> #InsTag,
against one scripted server that answers both recipes' prompts."""

from __future__ import annotations

from dataclasses import replace

import fakes
import pytest
from fakes import scripted_completion
from helpers import read_rows, scripted_config
from instag_fakes import query_of, tagger_answer

from pipelines.recipes.instag.config import InsTagConfig
from pipelines.run import run
from pipelines.settings import FieldError


def _answer(prompt: str, seed: int) -> tuple[str, str]:
    """Tagging prompts get the scripted tagger's answer, the rest Self-Instruct's."""
    if "\nQuery: " in prompt:
        return tagger_answer(query_of(prompt)), "stop"
    return scripted_completion(prompt, seed)


@pytest.fixture
def chain_server(scripted_server, monkeypatch):
    monkeypatch.setattr(fakes, "scripted_completion", _answer)
    return scripted_server()


def _config(base_url: str, out, **changes):
    cfg = scripted_config(base_url, out, None, num_instructions=8, max_prompts=4)
    instag = InsTagConfig(sample_size=5, api="completions", structured_output=False,
                          min_tag_count=1, embedding_model="char-trigram", semantic_eps=0.5,
                          min_support=2, top_tags=5)
    return replace(cfg, then=("filter", "instag"), instag=instag, audit_per_source=0,
                   **changes)


def test_generation_filter_instag_run_as_one_job(chain_server, tmp_path):
    out = tmp_path / "out"
    manifest = run(_config(chain_server.base_url, out)).manifest

    assert all(c["holds"] for c in manifest["accounting"]), manifest["accounting"]
    steps = manifest["steps"]
    assert [s["recipe"] for s in steps] == ["self_instruct", "filter", "instag"]
    assert [s["folder"] for s in steps] == ["steps/self_instruct", "steps/filter", "data"]
    si, flt, ig = steps
    # rows flow: what a step keeps is what the next one gets, and it is all on disk
    assert si["kept"] > ig["kept"] > 0
    assert flt["in"] == si["kept"] and ig["in"] == flt["kept"]
    across = [c for c in manifest["accounting"] if c["stage"].startswith("step/")]
    assert {c["identity"] for c in across} >= {"rows into filter = kept by self_instruct",
                                                "rows into instag = kept by filter"}
    assert len(read_rows(out, "steps/self_instruct")) == si["kept"]
    assert len(read_rows(out, "steps/filter")) == flt["kept"]
    data = read_rows(out, "data")
    assert len(data) == ig["kept"] == 5  # the Cf-D sample
    assert all(r["tags"] and r["cfd_rank"] is not None for r in data)
    assert {r["id"] for r in data} <= {r["id"] for r in read_rows(out, "steps/filter")}
    # each step's stages are its own, the chained ones under the step's name
    stages = manifest["stages"]
    assert "instruction_gen" in si["stages"] and "rules" in si["stages"]
    assert "filter/rules" in flt["stages"] and all(s.startswith("filter/") for s in flt["stages"])
    assert stages["filter/rules"]["produced"] == si["kept"]
    assert stages["instag/instag_tag"]["in"] >= ig["in"]
    assert stages["instag/instag_sample"]["kept"] == 5
    # targets per step, and all of them in the run's targets
    assert "self_instruct.num_instructions" in si["targets"]
    assert ig["targets"]["instag.sample_size"]["got"] == 5
    assert set(manifest["targets"]) == {"self_instruct.num_instructions",
                                        "instag.sample_size"}
    assert (out / "reports" / "instag.json").exists()


def test_then_names_only_recipes_that_take_rows(chain_server, tmp_path):
    cfg = scripted_config(chain_server.base_url, tmp_path / "out", None)
    with pytest.raises(FieldError, match="cannot take another step's rows"):
        replace(cfg, then=("explore_instruct",))
    with pytest.raises(FieldError, match="twice"):
        replace(cfg, then=("filter", "filter"))
