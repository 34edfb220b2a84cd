"""Explore-Instruct through the real pipeline (FnApiRunner, HTTP client, Parquet, tree files)
against a scripted generator: lookahead, backtracking, the breadth cap, unparsable answers, the
depth limit, bounded attempts, lineage, and byte-identical reruns."""

from __future__ import annotations

import dataclasses
import json
import re
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from explore_fakes import ExploreScript, ExploreServer
from helpers import read_rows, shard_digests

from pipelines.config import RunConfig
from pipelines.recipes.explore_instruct.config import (
    ExploreExampleConfig,
    ExploreInstructConfig,
    ExploreSubtaskConfig,
)
from pipelines.run import run
from pipelines.settings import CacheConfig, FiltersConfig, GeneratorConfig, RulesConfig
from schemas import RECORD_SCHEMA, Reason
from schemas.tree import NODE_SCHEMA
from schemas.tree_format import read_tree

ROOT = "Help with editing text"


@pytest.fixture
def explore_server():
    servers = []

    def start(**script) -> ExploreServer:
        server = ExploreServer(ExploreScript(**script))
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def _config(server: ExploreServer, out: Path, **ei) -> RunConfig:
    params = dict(
        root_task=ROOT, root_description="Improve a text for its reader.",
        root_examples=(ExploreExampleConfig("Say the same thing in other words.",
                                            "The bus was late again.", "Again the bus came late."),
                       ExploreExampleConfig("Make this message more polite.",
                                            "Send it now.", "Could you send it, please?")),
        subtasks=(ExploreSubtaskConfig("Paraphrase", "Restate a text."),
                  ExploreSubtaskConfig("Grammar correction", "Fix mistakes.")),
        max_depth=2, extend_nums=(3, 2), enrich_nums=(0, 12, 5), max_extend_attempts=2,
        max_enrich_rounds=2, sample_size=50, api="chat")
    return RunConfig(
        recipe="explore_instruct", output_dir=str(out), num_shards=2,
        generator=GeneratorConfig(backend="openai", base_url=server.base_url, model="scripted",
                                  max_concurrency=4, timeout_s=5.0, max_attempts=2,
                                  backoff_s=0.01, max_backoff_s=0.05),
        cache=CacheConfig(enabled=False),
        explore_instruct=ExploreInstructConfig(**(params | ei)))  # type: ignore[arg-type]


def _nodes(out: Path) -> list[dict]:
    return sorted(read_rows(out, "nodes"), key=lambda r: r["level_order"])


def _extend_prompts(server: ExploreServer, target: str) -> list[str]:
    return [p for p in server.script.prompts
            if "new subtasks, give the reason" in p and f"\nTarget task: {target}\n" in p]


def test_tree_grows_by_lookahead_and_backtracking_with_lineage(explore_server, tmp_path):
    server = explore_server()
    out = tmp_path / "out"
    manifest = run(_config(server, out)).manifest
    assert all(c["holds"] for c in manifest["accounting"]), manifest["accounting"]

    nodes = _nodes(out)
    by_name = {n["task_name"]: n for n in nodes}
    root = nodes[0]
    assert root["depth"] == 0 and root["new_children"] == 3 and root["children"] == 5
    # Backtracking: the root's prompt lists the children it already has.
    [root_prompt] = _extend_prompts(server, ROOT)
    assert "already has: ['paraphrase', 'grammar_correction']." in root_prompt
    assert "and 2 of them exist already. Propose 3 new subtasks" in root_prompt
    # Lookahead: a leaf is decomposed one level deeper; its peers are in the prompt.
    [leaf_prompt] = _extend_prompts(server, "Paraphrase")
    assert "Subtasks that this target task already has: []." in leaf_prompt
    assert "'grammar_correction'" in leaf_prompt.split("Peer tasks")[1]
    para = by_name["paraphrase"]
    assert para["new_children"] >= 2 and para["extend_stop"] == "target_reached"
    # Depth limit: nothing below max_depth, and depth-2 nodes were never extended.
    assert max(n["depth"] for n in nodes) == 2
    deepest = [n for n in nodes if n["depth"] == 2]
    assert deepest and all(n["extend_requests"] == 0 and n["extend_stop"] == "depth_limit"
                           and n["children"] == 0 for n in deepest)
    assert not _extend_prompts(server, deepest[0]["raw_task_name"])

    data = read_rows(out, "data")
    assert len(data) == 50
    ids = {n["id"]: n for n in nodes}
    for row in data:
        node = ids[row["node_id"]]
        assert row["node_path"] == node["path"] and row["task_id"] == node["id"]
        assert row["node_path"].startswith("help_with_editing_text")
    assert sum(n["examples_sampled"] for n in nodes) == 50
    for kind, schema in (("data", RECORD_SCHEMA), ("nodes", NODE_SCHEMA)):
        for f in sorted((out / kind).glob("*.parquet")):
            assert pq.read_schema(f).equals(schema, check_metadata=True)

    rejected = read_rows(out, "rejected")
    reasons = {r["reason"] for r in rejected}
    assert reasons <= {r.value for r in Reason}
    assert {"not_sampled", "not_novel", "blacklisted_keyword", "malformed_example",
            "wrapped_input"} <= reasons
    stages = manifest["stages"]
    assert stages["explore_sample"]["kept"] == 50
    assert stages["explore_filter"]["produced"] == stages["explore_sample"]["produced"] + \
        sum(stages["explore_filter"]["rejected"].values())

    # The tree view: the paper's files, readable by our reader, examples = filtered ones.
    tree = read_tree(out / "tree")
    assert [n.task_name for n in tree] == [n["task_name"] for n in nodes]
    for node in tree:
        assert len(node.examples) == by_name[node.task_name]["examples_filtered"]
    summary = json.loads((out / "tree" / "summary.json").read_text())
    assert summary["depths"]["1"]["nodes"] == 5
    assert summary["total"]["examples_sampled"] == 50
    assert json.loads((out / "tree" / "pruned_subtasks_name.json").read_text()) == [
        n["task_name"] for n in nodes if n["pruned"]]


def test_breadth_cap_rejects_extra_subtasks_and_stops_asking(explore_server, tmp_path):
    server = explore_server(extra_subtasks=3)
    out = tmp_path / "out"
    manifest = run(_config(server, out, max_depth=1, extend_nums=(5,), enrich_nums=(0, 3),
                           max_child_num=4, max_extend_attempts=3)).manifest
    assert all(c["holds"] for c in manifest["accounting"])
    root = _nodes(out)[0]
    assert root["children"] == 4 and root["new_children"] == 2
    assert root["extend_stop"] == "breadth_cap"
    assert root["extend_requests"] == 1  # full after one call: later attempts send nothing
    # Asked for 2 (the room left), got 5: 3 rejected, and their examples with them.
    assert manifest["stages"]["explore_nodes"]["rejected"] == {"breadth_cap": 3}
    upstream = [r for r in read_rows(out, "rejected")
                if r["reason"] == "task_failed_upstream"]
    assert len(upstream) == 6


def test_attempts_see_earlier_children_and_are_bounded(explore_server, tmp_path):
    server = explore_server(max_subtasks=1)
    out = tmp_path / "out"
    run(_config(server, out, max_depth=1, extend_nums=(4,), enrich_nums=(0, 0),
                max_extend_attempts=3))
    root = _nodes(out)[0]
    assert root["extend_requests"] == 3 and root["new_children"] == 3
    assert root["extend_stop"] == "attempts_exhausted"
    prompts = _extend_prompts(server, ROOT)
    listed = [re.search(r"already has: (\[.*?\])\.", p)[1].count("'") // 2 for p in prompts]
    assert listed == [2, 3, 4]  # each attempt lists the child the previous one added
    assert [int(re.search(r"Propose (\d+)", p)[1]) for p in prompts] == [4, 3, 3]


def test_unparsable_answers_are_rejected_and_do_not_loop(explore_server, tmp_path):
    server = explore_server(unparsable_extend=1.0, unparsable_enrich=1.0)
    out = tmp_path / "out"
    manifest = run(_config(server, out, max_extend_attempts=2, max_enrich_rounds=2)).manifest
    assert all(c["holds"] for c in manifest["accounting"])
    nodes = _nodes(out)
    assert len(nodes) == 3  # root and the two given subtasks: nothing was added
    assert [n["extend_requests"] for n in nodes] == [2, 2, 2]
    assert {n["extend_stop"] for n in nodes} == {"attempts_exhausted"}
    stages = manifest["stages"]
    assert stages["explore_extend"]["rejected"] == {"unparsable_response": 6}
    assert stages["explore_enrich"]["in"] == 2 * 2 * 2  # two nodes, two calls, two rounds
    assert stages["explore_examples"]["rejected"] == {"unparsable_response": 8}
    # nothing was generated: the config's own examples are what went in, not data
    assert read_rows(out, "data") == []
    seeds = [r for r in read_rows(out, "rejected") if r["reason"] == "seed_example"]
    assert sorted(r["instruction"] for r in seeds) == [
        "Make this message more polite.", "Say the same thing in other words."]


def test_same_answers_give_byte_identical_output(explore_server, tmp_path):
    server = explore_server()
    first, second = tmp_path / "a", tmp_path / "b"
    run(_config(server, first))
    run(_config(server, second))
    assert shard_digests(first) == shard_digests(second)
    for path in sorted((first / "tree").iterdir()):
        assert path.read_bytes() == (second / "tree" / path.name).read_bytes(), path.name


def test_early_attempts_change_no_output_and_answer_fruitless_attempts(explore_server,
                                                                       tmp_path):
    """`extend_ahead` sends a node's later attempts with its current one; a node that gained
    no child finds its next attempt answered already (a cache hit), one that did sends a
    fresh request. Either way the run writes what one attempt at a time writes."""
    server = explore_server(unparsable_extend=0.6, max_subtasks=1)
    usage = {}
    for ahead in (0, 3):
        cfg = _config(server, tmp_path / f"ahead{ahead}", max_extend_attempts=4,
                      extend_ahead=ahead, enrich_nums=(0, 3, 3))
        cfg = dataclasses.replace(cfg, cache=CacheConfig(dir=str(tmp_path / f"cache{ahead}")))
        usage[ahead] = run(cfg).manifest["run"]["generator_usage"]
    assert shard_digests(tmp_path / "ahead0") == shard_digests(tmp_path / "ahead3")
    for path in sorted((tmp_path / "ahead0" / "tree").iterdir()):
        assert path.read_bytes() == (tmp_path / "ahead3" / "tree" / path.name).read_bytes()
    sequential, early = usage[0]["explore_extend"], usage[3]["explore_extend"]
    assert sequential["requests"] == early["requests"] and "cache_hits" not in sequential
    assert 0 < early["cache_hits"] < early["requests"]  # fruitless attempts were answered
    assert early["calls"] + early["cache_hits"] == early["requests"]
    assert usage[3]["explore_extend_ahead"]["calls"] >= early["cache_hits"]


def _with_rules(cfg: RunConfig, *words: str) -> RunConfig:
    return dataclasses.replace(cfg, filters=FiltersConfig(rules=RulesConfig(illegal_words=words)))


def test_rules_run_before_sampling_so_data_is_what_the_tree_sampled(explore_server, tmp_path):
    """Examples the rules reject never reach the sample: data/ holds sample_size rows, and
    they are exactly the examples the nodes table and tree/ say were sampled."""
    server = explore_server()
    out = tmp_path / "out"
    manifest = run(_with_rules(_config(server, out), "tone")).manifest
    assert all(c["holds"] for c in manifest["accounting"]), manifest["accounting"]
    assert manifest["stages"]["rules"]["rejected"]["illegal_word"] > 0

    data = read_rows(out, "data")
    assert len(data) == 50
    assert not [r for r in data if re.search(r"\btone\b", _text(r), re.IGNORECASE)]
    nodes = _nodes(out)
    assert Counter(r["node_id"] for r in data) == Counter(
        {n["id"]: n["examples_sampled"] for n in nodes if n["examples_sampled"]})
    summary = json.loads((out / "tree" / "summary.json").read_text())
    assert summary["total"]["examples_sampled"] == len(data)
    assert summary["sample"] == {"requested": 50, "sampled": 50, "shortfall": 0}
    # tree/ holds the filtered examples (the rules passed): every sampled row is among them.
    path_of = {n["task_name"]: n["path"] for n in nodes}
    tree_examples = {(path_of[node.task_name], e.instruction, e.input, e.output)
                     for node in read_tree(out / "tree") for e in node.examples}
    assert all(not re.search(r"\btone\b", " ".join(t[1:]), re.IGNORECASE)
               for t in tree_examples)
    assert {(r["node_path"], r["instruction"], r["input"], r["output"]) for r in data} <= \
        tree_examples


def test_sample_shortfall_is_reported(explore_server, tmp_path):
    server = explore_server()
    out = tmp_path / "out"
    run(_with_rules(_config(server, out, sample_size=5000), "tone"))
    data = read_rows(out, "data")
    summary = json.loads((out / "tree" / "summary.json").read_text())
    assert 0 < len(data) < 5000
    assert summary["sample"] == {"requested": 5000, "sampled": len(data),
                                 "shortfall": 5000 - len(data)}


def _text(row: dict) -> str:
    return " ".join((row["instruction"], row["input"], row["output"]))
