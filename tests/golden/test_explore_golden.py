"""Explore-Instruct fidelity on the paper's shipped tree (`golden/explore_instruct/demo_domain`).

The tree round-trips through our reader and writer; the per-node filter gives the decisions of
the paper's pairwise rouge-score loop; the sampling allocation and the drawn examples equal a
literal transcription of the paper's `sample` action run with `random.seed(42)`.
"""

from __future__ import annotations

import dataclasses
import json
import random

import pytest
from helpers import read_rows

from filters.explore import (
    SampleNode,
    allocation,
    filter_node_examples,
    prune_names,
    sample_tree,
)
from pipelines.config import RunConfig
from pipelines.recipes.explore_instruct.config import ExploreInstructConfig
from pipelines.recipes.explore_instruct.finish import sample_examples
from pipelines.recipes.explore_instruct.steps import given_records
from pipelines.run import run
from pipelines.settings import CacheConfig, FiltersConfig, GeneratorConfig, RulesConfig
from schemas.tree import TaskNode
from schemas.tree_format import META_FILE, dump_tree, read_tree, write_tree

# Examples per node kept by the per-node filter (ROUGE-L > 0.7 to an earlier kept one drops),
# in level order; 4,433 examples in, 2,448 kept.
KEPT = {"assistance_for_text_editting": 2, "paraphrase": 269, "style_transfer": 347,
        "simplify_language": 357, "text_expansion": 376, "fix_spelling_and_grammar": 167,
        "language_style_simulation": 295, "coherence_and_cohesion_improvement": 241,
        "writing_enhancement": 394}
ALLOCATION_1000 = [1, 110, 142, 146, 154, 69, 121, 99, 161]


@pytest.fixture(scope="module")
def demo_dir(golden_dir):
    return golden_dir / "explore_instruct" / "demo_domain"


@pytest.fixture(scope="module")
def tree(demo_dir) -> list[TaskNode]:
    return read_tree(demo_dir)


def test_reader_sees_the_shipped_tree(tree):
    assert [n.task_name for n in tree] == list(KEPT)
    assert [n.depth for n in tree] == [0] + [1] * 8
    assert tree[0].raw_task_name == "Assistance for text editting" and tree[0].reason == ""
    assert [len(n.examples) for n in tree] == [2, 512, 512, 612, 634, 512, 512, 512, 625]
    assert all(n.parent_id == tree[0].node_id for n in tree[1:])


def test_tree_round_trips_through_reader_and_writer(tree, demo_dir, tmp_path):
    files = dump_tree(tree)
    assert sorted(files) == sorted(p.name for p in demo_dir.iterdir())
    for name, text in files.items():
        shipped = (demo_dir / name).read_text(encoding="utf-8")
        assert json.loads(text) == json.loads(shipped), name
        if name != tree[0].config_filename:  # the seed root file is hand-indented
            assert text == shipped, f"{name} differs byte for byte"
    assert files[META_FILE] == (demo_dir / META_FILE).read_text(encoding="utf-8")
    write_tree(tmp_path, tree)
    assert read_tree(tmp_path) == tree


def test_per_node_filter_counts(tree):
    for node in tree:
        results = filter_node_examples([e.instruction for e in node.examples])
        assert sum(v.keep for v, _ in results) == KEPT[node.task_name], node.task_name
        assert all(v.score > 0.7 for v, _ in results if not v.keep)


def test_per_node_filter_matches_pairwise_rouge_score(tree):
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    for node in tree:
        instructions = [e.instruction for e in node.examples[:60]]
        kept: list[str] = []
        expected = []
        for text in instructions:  # the paper's loop, literally
            drop = bool(kept) and max(
                scorer.score(k, text)["rougeL"].fmeasure for k in kept) > 0.7
            expected.append(not drop)
            if not drop:
                kept.append(text)
        assert [v.keep for v, _ in filter_node_examples(instructions)] == expected


def test_prune_keeps_every_shipped_name(tree):
    assert not any(d.pruned for d in prune_names([n.raw_task_name for n in tree]))


def _filtered(tree: list[TaskNode]) -> list[TaskNode]:
    out = []
    for node in tree:
        results = filter_node_examples([e.instruction for e in node.examples])
        kept = tuple(e for e, (v, _) in zip(node.examples, results, strict=True) if v.keep)
        out.append(dataclasses.replace(node, examples=kept))
    return out


def _paper_sample(tree: list[TaskNode], n: int, max_depth: int = 3) -> list:
    random.seed(42)  # the paper's main()
    nodes = [t for t in tree if t.depth <= max_depth]
    s = sum(min(len(t.examples), 500) for t in nodes)
    data = []
    for t in nodes:
        data += random.sample(t.examples, min(int(n * min(len(t.examples), 500) / s) + 1,
                                              len(t.examples)))
    data = data[:n]
    if len(data) < n:
        data += random.sample(tree[0].examples, n - len(data))  # raises when short
    return data


def test_sampling_allocation_and_draws_equal_the_papers(tree):
    filtered = _filtered(tree)
    assert allocation([len(t.examples) for t in filtered], 1000) == ALLOCATION_1000
    cfg = RunConfig(recipe="explore_instruct", output_dir="/tmp/unused", seed=42,
                    explore_instruct=ExploreInstructConfig(tree_dir="x", sample_size=1000))
    records = given_records(filtered)
    judged = sample_examples(records, filtered, {}, cfg)
    picked = sorted((r.node_id, r.instruction, r.input, r.output) for r, v in judged if v.keep)
    by_id = {t.node_id: t for t in filtered}
    paper = _paper_sample(filtered, 1000)
    assert len(picked) == len(paper) == 1000
    ours = sorted(tuple(e) for _, *e in picked)
    assert ours == sorted((e.instruction, e.input, e.output) for e in paper)
    plan = sample_tree([SampleNode(len(t.examples), True) for t in filtered], 1000, seed=42)
    assert [filtered[i].examples[j] for i, j in plan.picks] == paper  # same draws, same order
    per_node = [sum(1 for node_id, *_ in picked if node_id == t.node_id) for t in filtered]
    assert per_node == ALLOCATION_1000[:-1] + [1000 - sum(ALLOCATION_1000[:-1])]
    assert set(by_id) == {node_id for node_id, *_ in picked}


def test_sampling_more_than_exists_reports_instead_of_crashing(tree):
    filtered = _filtered(tree)
    with pytest.raises(ValueError):
        _paper_sample(filtered, 5000)  # the paper's top-up asks the 2 root examples for more
    cfg = RunConfig(recipe="explore_instruct", output_dir="/tmp/unused",
                    explore_instruct=ExploreInstructConfig(tree_dir="x", sample_size=5000))
    judged = sample_examples(given_records(filtered), filtered, {}, cfg)
    assert sum(v.keep for _, v in judged) == sum(KEPT.values())  # everything, once


def test_the_pipeline_samples_the_shipped_tree_like_the_paper(tree, demo_dir, tmp_path):
    """Start the recipe from the shipped tree with nothing to generate: the per-node filter
    and the sample run on Beam and give exactly the paper's 1000 examples."""
    cfg = RunConfig(
        recipe="explore_instruct", output_dir=str(tmp_path / "out"), seed=42, num_shards=2,
        generator=GeneratorConfig(backend="openai", base_url="http://127.0.0.1:9/v1",
                                  model="unused"),
        cache=CacheConfig(enabled=False), audit_per_source=0,
        filters=FiltersConfig(rules=RulesConfig(enabled=False)),
        explore_instruct=ExploreInstructConfig(tree_dir=str(demo_dir), max_depth=1,
                                               extend_nums=(0,), enrich_nums=(0, 0),
                                               sample_size=1000))
    manifest = run(cfg).manifest
    assert all(c["holds"] for c in manifest["accounting"])
    stages = manifest["stages"]
    assert stages["explore_given"]["kept"] == 4433 and "explore_extend" not in stages
    assert stages["explore_filter"]["kept"] == sum(KEPT.values())
    data = read_rows(tmp_path / "out", "data")
    paper = _paper_sample(_filtered(tree), 1000)
    assert sorted((r["instruction"], r["input"], r["output"]) for r in data) == sorted(
        (e.instruction, e.input, e.output) for e in paper)
    written = read_tree(tmp_path / "out" / "tree")
    assert [len(n.examples) for n in written] == list(KEPT.values())
