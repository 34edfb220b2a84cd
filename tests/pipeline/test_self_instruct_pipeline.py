"""Self-Instruct through the real pipeline (FnApiRunner, HTTP client, cache, Parquet) against
a scripted generator server."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
from helpers import read_rows, scripted_config, shard_digests

from pipelines.run import run
from schemas import FAILURE_SCHEMA, RECORD_SCHEMA, REJECTED_SCHEMA, Reason


def test_rounds_grow_the_pool_and_every_record_is_accounted_for(scripted_server, tmp_path):
    server = scripted_server()
    out = tmp_path / "out"
    result = run(scripted_config(server.base_url, out, tmp_path / "cache"))
    manifest = result.manifest

    instructions = read_rows(out, "instructions")
    rounds = {row["round"] for row in instructions}
    assert {1, 2} <= rounds, f"later rounds must add to the pool, saw rounds {rounds}"
    assert all(row["is_classification"] is not None for row in instructions)
    assert all(row["rouge_l_max"] is not None and row["rouge_l_max"] <= 0.7
               for row in instructions)

    data = read_rows(out, "data")
    assert data, "some instances must be kept"
    task_ids = {row["id"] for row in instructions}
    assert all(row["task_id"] in task_ids for row in data)
    assert all(row["generator"] == "scripted" and row["prompt_ref"] for row in data)
    assert all(row["output"] for row in data)

    rejected = read_rows(out, "rejected")
    reasons = {row["reason"] for row in rejected}
    assert reasons <= {r.value for r in Reason}
    assert {"not_novel", "response_truncated", "blacklisted_keyword"} <= reasons
    not_novel = [r for r in rejected if r["reason"] == "not_novel"]
    assert all(r["score"] > 0.7 and r["most_similar"] for r in not_novel)

    assert all(check["holds"] for check in manifest["accounting"]), manifest["accounting"]
    stages = manifest["stages"]
    assert stages["novelty"]["produced"] == stages["instruction_gen"]["kept"]
    assert stages["clf_identify"]["in"] == stages["novelty"]["kept"]
    assert manifest["rows"]["data"] == stages["instance_gen"]["kept"] == len(data)
    assert json.loads((out / "manifest.json").read_text())["schema_version"] == "1.0"


def test_shards_use_the_declared_schemas(scripted_server, tmp_path):
    server = scripted_server()
    out = tmp_path / "out"
    run(scripted_config(server.base_url, out, None, max_prompts=4))
    for kind, schema in (("data", RECORD_SCHEMA), ("instructions", RECORD_SCHEMA),
                         ("rejected", REJECTED_SCHEMA), ("failed", FAILURE_SCHEMA)):
        files = sorted((out / kind).glob("*.parquet"))
        assert [f.name for f in files] == ["part-00000-of-00002.parquet",
                                           "part-00001-of-00002.parquet"]
        for f in files:
            assert pq.read_schema(f).equals(schema, check_metadata=True)


def test_same_inputs_give_byte_identical_shards(scripted_server, tmp_path):
    server = scripted_server()
    first, second = tmp_path / "a", tmp_path / "b"
    run(scripted_config(server.base_url, first, None))
    run(scripted_config(server.base_url, second, None))
    assert shard_digests(first) == shard_digests(second)
    m1 = json.loads((first / "manifest.json").read_text())
    m2 = json.loads((second / "manifest.json").read_text())
    for m in (m1, m2):
        m.pop("run")
        m["config"].pop("output_dir")
        # the dataset card names the run's folder and time; every shard is the same bytes
        m["written"] = {name: record if name.endswith(".parquet") else None
                        for name, record in m["written"].items()}
    assert m1 == m2


def test_the_loop_stops_deciding_once_the_target_is_met(scripted_server, tmp_path):
    """Prompts are decided in order and the lane stops at the first prompt that brings the
    pool to the target: every decided prompt before it left the pool short."""
    server = scripted_server()
    out = tmp_path / "out"
    result = run(scripted_config(server.base_url, out, None, num_instructions=3,
                                 max_prompts=16))
    instructions = read_rows(out, "instructions")
    decided = result.manifest["stages"]["instruction_gen"]["in"]
    assert len(instructions) >= 3 and decided < 16
    last = decided - 1
    assert max(row["slot"] for row in instructions) == last
    assert sum(row["slot"] < last for row in instructions) < 3
    assert {row["lane"] for row in instructions} == {0}
    target = result.manifest["targets"]["self_instruct.num_instructions"]
    assert target["met"] and target["why"] == f"reached after {decided} prompts"


def test_classification_tasks_get_output_first_instances_and_others_input_first(
        scripted_server, tmp_path):
    """The scripted server answers the output-first template with "Class label:" blocks and
    the input-first template with "Example" blocks, so each kept row shows which one it got."""
    server = scripted_server()
    out = tmp_path / "out"
    run(scripted_config(server.base_url, out, None, max_prompts=8))
    data = read_rows(out, "data")
    clf = [row for row in data if row["is_classification"]]
    gen = [row for row in data if not row["is_classification"]]
    assert clf and gen, "the scripted classifier says Yes to about a third of the tasks"
    labels = {"Positive", "Negative", "Neutral", "Yes", "No"}
    for row in clf:
        assert row["prompt_ref"] == "self_instruct/instance_output_first@v2"
        assert row["output"] in labels and row["input"].startswith("Sentence: ")
        assert json.loads(row["sampling"])["max_tokens"] == 300
    for row in gen:
        assert row["prompt_ref"] == "self_instruct/instance_input_first@v1"
        assert row["output"].startswith("answer ") and row["input"].startswith("case ")
        assert json.loads(row["sampling"])["max_tokens"] == 350
