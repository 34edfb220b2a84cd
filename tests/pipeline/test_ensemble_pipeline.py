"""Ensemble-Instruct through the real pipeline (FnApiRunner, HTTP client, Parquet) against
scripted servers: the generator (which also serves the greedy "twin" extra model, as the
embedded demo's greedy SmolLM2 does) and a second server for the other extra model."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from ensemble_fakes import EnsembleScriptedServer, generator_output, scenario
from helpers import read_rows, shard_digests

from pipelines.config import RunConfig
from pipelines.recipes.ensemble_instruct.config import (
    EnsembleInstructConfig,
    EnsembleOutputOnlyTasksConfig,
    EnsembleTasksConfig,
    ExtraGeneratorConfig,
)
from pipelines.run import run
from pipelines.settings import CacheConfig, GeneratorConfig, SamplingConfig
from schemas import Reason


def _generator(base_url: str) -> GeneratorConfig:
    return GeneratorConfig(backend="openai", base_url=base_url, model="scripted",
                           max_concurrency=4, timeout_s=2.0, max_attempts=2, backoff_s=0.01,
                           max_backoff_s=0.02)


def _config(gen_url: str, other_url: str, out, **ei) -> RunConfig:
    generator = _generator(gen_url)
    extras = (
        ExtraGeneratorConfig(name="twin", generator=generator, api="chat",
                             sampling=SamplingConfig(64, 0.0, 0.0, stop=("\n\n",))),
        ExtraGeneratorConfig(name="other", generator=_generator(other_url), prompt="few_shot"),
    )
    params = dict(
        type_a=EnsembleTasksConfig(num_instructions=14, prompts_per_round=4, max_prompts=12),
        type_b=EnsembleOutputOnlyTasksConfig(num_instructions=10, prompts_per_round=4,
                                             max_prompts=12),
        extra_generators=extras) | ei
    return RunConfig(recipe="ensemble_instruct", output_dir=str(out), num_shards=2,
                     max_failure_ratio=0.5, generator=generator,
                     ensemble_instruct=EnsembleInstructConfig(**params),
                     cache=CacheConfig(enabled=False))


@pytest.fixture
def servers():
    made = []

    def start(persona: str) -> EnsembleScriptedServer:
        server = EnsembleScriptedServer(persona)
        server.start()
        made.append(server)
        return server

    yield start
    for server in made:
        server.stop()


def test_every_consensus_path_and_the_accounting(servers, tmp_path):
    gen, other = servers("twin"), servers("other")
    out = tmp_path / "out"
    manifest = run(_config(gen.base_url, other.base_url, out)).manifest
    assert all(c["holds"] for c in manifest["accounting"]), manifest["accounting"]
    stages = manifest["stages"]

    instructions = read_rows(out, "instructions")
    assert Counter(r["instance_type"] for r in instructions).keys() == {
        "input_output", "output_only"}
    assert all("|EoS|" not in r["instruction"] for r in instructions)
    assert stages["instance_gen"]["in"] == len(instructions) == stages["novelty"]["kept"]

    ens = stages["ensemble"]
    samples = stages["instance_gen"]["kept"]
    assert ens["in"] == samples == ens["ok"] + ens["failed"]
    assert ens["produced"] == ens["ok"]
    assert set(ens["kept_by"]) == {"exact_match", "agreed_others", "rouge_selected"}
    assert set(ens["rejected"]) == {Reason.ENSEMBLE_DISAGREEMENT.value}
    assert stages["extra_output/twin"]["in"] == stages["extra_output/other"]["in"] == samples
    assert stages["extra_output/twin"]["failed"] == 0
    failed_requests = stages["extra_output/other"]["failed"]
    assert ens["failed"] == failed_requests > 0
    assert other.refused == 2 * failed_requests  # max_attempts = 2, then a dead letter
    assert stages["instance_gen"]["rejected"] == {"invalid_format": sum(
        scenario(r["instruction"]) == "invalid" for r in instructions)}

    data = read_rows(out, "data")
    assert len(data) == ens["kept"] == manifest["rows"]["data"]
    for row in data:
        record = json.loads(row["ensemble"])
        path = scenario(row["instruction"])
        assert row["ensemble_path"] == record["path"]
        assert [c["name"] for c in record["candidates"]] == ["generator", "twin", "other"]
        assert len(record["pairwise"]) == 3
        assert record["candidates"][0]["output"] == generator_output(row["instruction"])
        assert {"exact": "exact_match", "agreed": "agreed_others",
                "rouge": "rouge_selected"}[path] == row["ensemble_path"]
        if path == "agreed":  # the agreed output, stripped (the default rule)
            assert row["output"] == "Both extras say: it depends."
            assert record["selected"] == "twin"
        elif path == "exact":
            assert row["output"] == generator_output(row["instruction"])
        assert record["candidates"][1]["model"] == "scripted"
        assert json.loads(record["candidates"][1]["sampling"])["temperature"] == 0.0

    rejected = [r for r in read_rows(out, "rejected") if r["filter_stage"] == "ensemble"]
    assert len(rejected) == sum(ens["rejected"].values())
    assert all(r["score"] <= 0.01 and r["ensemble_path"] == "disagreement" for r in rejected)
    assert all(scenario(r["instruction"]) == "disagree" for r in rejected)

    failed = read_rows(out, "failed")
    missing = [f for f in failed if f["stage"] == "ensemble"]
    assert len(missing) == ens["failed"]
    assert all(f["error_class"] == "missing_extra_output" and "other" in f["message"]
               for f in missing)
    assert {f["stage"] for f in failed} == {"ensemble", "extra_output/other"}

    # The twin is the generator's model on the generator's server, with its own sampling.
    chat = [b for b in gen.bodies if "messages" in b]
    assert len(chat) == samples and all(b["temperature"] == 0.0 for b in chat)
    assert all("min_tokens" in b for b in gen.bodies if "prompt" in b)


def test_same_answers_give_byte_identical_shards_paper_modes(servers, tmp_path):
    """Two runs with the paper code's `|EoS|` quirk and its original agree rule."""
    gen, other = servers("twin"), servers("other")
    first, second = tmp_path / "a", tmp_path / "b"
    for out in (first, second):
        run(_config(gen.base_url, other.base_url, out, eos_suffix=True,
                    agree_rule="generator_output"))
    assert shard_digests(first) == shard_digests(second)
    instructions = read_rows(first, "instructions")
    assert instructions and all(r["instruction"].endswith("|EoS|") for r in instructions)
    data = read_rows(first, "data")
    assert all("|EoS|" not in r["instruction"] for r in data)
    asked = [b for b in gen.bodies if b.get("prompt", "").startswith("Think up")]
    assert all(b["include_stop_str_in_output"] is True for b in asked)
    agreed = [r for r in data if r["ensemble_path"] == "agreed_others"]
    assert agreed
    assert all(r["output"] == generator_output(r["instruction"]) for r in agreed)
    assert all(json.loads(r["ensemble"])["selected"] == "generator" for r in agreed)


def test_a_type_without_seed_tasks_is_an_input_error(tmp_path):
    import dataclasses

    from pipelines.errors import InputError

    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text(json.dumps({"id": "s1", "instruction": "Add the numbers.",
                                 "instances": [{"input": "1, 2", "output": "3"}],
                                 "is_classification": False}) + "\n", encoding="utf-8")
    out = tmp_path / "out"
    cfg = dataclasses.replace(_config("http://127.0.0.1:9/v1", "http://127.0.0.1:9/v1", out),
                              seed_tasks=str(seeds))
    with pytest.raises(InputError, match="no output_only seed tasks"):
        run(cfg)
    assert not out.exists()
