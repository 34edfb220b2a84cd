"""Explore-Instruct tree model and steps: names, level order, prune, filter, sampling, and the
bounded extend/enrich request logic (reference §3.1-3.3, §3.6, pitfalls §6.11-12)."""

from __future__ import annotations

import dataclasses
import random
from collections import defaultdict

import pytest

from filters.explore import SampleNode, allocation, filter_node_examples, prune_names, sample_tree
from pipelines.config import RunConfig
from pipelines.generators.cache import cache_key
from pipelines.recipes.explore_instruct import steps
from pipelines.recipes.explore_instruct.config import (
    ExploreExampleConfig,
    ExploreInstructConfig,
    ExploreSubtaskConfig,
)
from pipelines.recipes.explore_instruct.enrich import enrich_requests
from schemas import InstructionRecord, Reason
from schemas.tree import Example, TaskNode, TreeView, formalize_taskname, unique_task_name


def _cfg(**kw) -> RunConfig:
    ei = dict(root_task="Text editing", root_examples=(
        ExploreExampleConfig("Rewrite this.", "a", "b"),
        ExploreExampleConfig("Shorten this.", "c", "d")),
        subtasks=(ExploreSubtaskConfig("Paraphrase", "r1"), ExploreSubtaskConfig("Style", "r2")),
        extend_nums=(4, 2), enrich_nums=(0, 25, 10))
    return RunConfig(recipe="explore_instruct", output_dir="/tmp/x",
                     explore_instruct=ExploreInstructConfig(**(ei | kw)))


def _child(parent: TaskNode, name: str, index: int) -> TaskNode:
    task = formalize_taskname(name)
    return TaskNode(f"id-{task}", parent.node_id, parent.depth + 1, task, name, "", parent.order
                    + (index,), f"{parent.path}/{task}", "explored")


def test_formalize_and_unique_names():
    assert formalize_taskname("  Fix spelling & Grammar!! ") == "fix_spelling_grammar"
    assert formalize_taskname("???") == ""
    taken = {"tone", "tone_0", "tone_1"}
    assert unique_task_name("tone", taken) == "tone_2"
    assert unique_task_name("new", taken) == "new"
    assert unique_task_name("x", {"x"} | {f"x_{i}" for i in range(10)}) is None


def test_level_order_and_peers():
    cfg = _cfg()
    root, para, style = steps.initial_tree(cfg)
    deep = _child(para, "Deep one", 0)
    view = TreeView([deep, style, root, para])
    assert [n.task_name for n in view.level_order()] == [
        "text_editing", "paraphrase", "style", "deep_one"]
    assert view.peers(para) == [style] and view.peers(root) == []
    assert view.parent(deep) == para


def test_extend_request_is_backtracking_on_the_root_and_stops_when_done():
    cfg = _cfg()
    tree = steps.initial_tree(cfg)
    root = tree[0]
    [req] = steps.extend_request(root, tree, 0, cfg)
    assert req.context.k == 4  # extend_nums[0] new children still missing
    assert "already has: ['paraphrase', 'style']." in req.prompt  # backtracking
    assert "and 2 of them exist already" in req.prompt
    grown = tree + [_child(root, f"New {i}", 2 + i) for i in range(3)]
    [req] = steps.extend_request(root, grown, 1, cfg)
    assert req.context.k == 3  # max(4 - 3, min_extend_num)
    assert steps.extend_request(root, grown + [_child(root, "Last", 5)], 2, cfg) == []
    full = dataclasses.replace(cfg, explore_instruct=dataclasses.replace(
        cfg.explore_instruct, max_child_num=6))
    [req] = steps.extend_request(root, grown, 1, full)
    assert req.context.k == 1  # capped by the breadth limit 6 - 5
    assert steps.extend_request(root, grown + [_child(root, "Sixth", 5)], 2, full) == []


def test_extend_request_on_a_leaf_is_lookahead_with_its_peers():
    cfg = _cfg()
    root, para, style = steps.initial_tree(cfg)
    [req] = steps.extend_request(para, [root, para, style], 0, cfg)
    assert "Target task: Paraphrase\n" in req.prompt
    assert "already has: []." in req.prompt and "already has: ['style']." in req.prompt
    assert "Input: a\n" in req.prompt or "Input: c\n" in req.prompt  # demos of the parent


def test_early_attempts_are_exactly_the_later_requests_of_an_unchanged_node():
    cfg = _cfg(max_extend_attempts=4, extend_ahead=2)
    tree = steps.initial_tree(cfg)
    root = tree[0]
    [req] = steps.extend_request(root, tree, 0, cfg)
    assert [a.context.attempt for a in req.ahead] == [1, 2]  # extend_ahead of them
    assert {a.stage for a in req.ahead} == {steps.STAGE_EXTEND_AHEAD}
    for early in req.ahead:  # what attempt j sends if the node gains nothing before it
        [later] = steps.extend_request(root, tree, early.context.attempt, cfg)
        assert cache_key("m", "r", early) == cache_key("m", "r", later)
    [last] = steps.extend_request(root, tree, 3, cfg)
    assert last.ahead == ()  # no attempt beyond max_extend_attempts
    grown = tree + [_child(root, "New one", 2)]
    [after] = steps.extend_request(root, grown, 1, cfg)  # the node gained a child: a new prompt
    assert cache_key("m", "r", after) != cache_key("m", "r", req.ahead[0])
    off = _cfg(max_extend_attempts=4, extend_ahead=0)
    assert steps.extend_request(root, tree, 0, off)[0].ahead == ()
    # the early requests never change the request itself
    assert dataclasses.replace(req, ahead=()) == steps.extend_request(root, tree, 0, off)[0]


def _candidate(parent: TaskNode, name: str, position: int, attempt: int = 0) -> steps.Candidate:
    rec = InstructionRecord(id=f"c{position}", content_hash="h", recipe="r", stage="s", round=0,
                            instruction=name)
    ex = InstructionRecord(id=f"e{position}", content_hash="h", recipe="r", stage="s", round=0,
                           instruction="Change the tone please.", node_id=f"n{position}")
    return steps.Candidate(parent, attempt, position, f"n{position}", name, "why", rec,
                           ((ex, steps.Verdict.ok()),))


def test_place_candidates_caps_breadth_and_suffixes_names():
    cfg = _cfg(max_child_num=4)
    tree = steps.initial_tree(cfg)
    root = tree[0]
    names = ["Paraphrase", "Tone shift", "Extra one", "Extra two"]
    nodes, examples = steps.place_candidates(
        [_candidate(root, n, i) for i, n in enumerate(names)][::-1], tree, cfg)
    assert [v.reason for _, v, _ in nodes] == [None, None, Reason.BREADTH_CAP, Reason.BREADTH_CAP]
    placed = [n for _, _, n in nodes if n]
    assert [n.task_name for n in placed] == ["paraphrase_0", "tone_shift"]
    assert [n.order for n in placed] == [(2,), (3,)]
    assert [v.reason for _, v in examples] == [None, None, Reason.TASK_FAILED_UPSTREAM,
                                               Reason.TASK_FAILED_UPSTREAM]
    assert examples[0][0].node_path == "text_editing/paraphrase_0"


def test_pruning_during_extension_is_optional():
    cfg = _cfg(prune_during_extension=True)
    tree = steps.initial_tree(cfg)
    nodes, _ = steps.place_candidates([_candidate(tree[0], "Paraphrase", 0)], tree, cfg)
    assert nodes[0][1].reason == Reason.SIMILAR_TASK_NAME and nodes[0][1].score > 0.7


def test_enrich_requests_cover_what_is_missing_in_batches_of_ten():
    cfg = _cfg()
    tree = steps.initial_tree(cfg)
    para = tree[1]
    none = defaultdict(list)
    assert len(enrich_requests(para, tree, none, {}, 1, cfg)) == 3  # 25 -> 3 calls
    assert len(enrich_requests(para, tree, none, {para.node_id: 18}, 2, cfg)) == 1
    assert enrich_requests(para, tree, none, {para.node_id: 25}, 3, cfg) == []
    assert enrich_requests(tree[0], tree, none, {}, 1, cfg) == []  # enrich_nums[0] = 0
    [first, *_] = enrich_requests(para, tree, none, {}, 1, cfg)
    assert first.prompt.endswith("New subtask: Paraphrase\nReason: r1")
    assert "Target task: Text editing\n" in first.prompt


def test_prune_in_level_order_against_kept_names():
    names = ["Text editing", "Text paraphrase", "Text paraphrase task", "Paraphrase task",
             "Paraphrase task now"]
    decisions = prune_names(names)
    # "Paraphrase task" stays: the pruned name it resembles never joined the pool.
    assert [d.pruned for d in decisions] == [False, False, True, False, True]
    assert decisions[2].most_similar == "Text paraphrase"
    assert decisions[2].score == pytest.approx(0.8)


def test_per_node_filter_keeps_exact_point_seven():
    # (lcs, la, lb) = (7, 7, 13): rouge-score's float is 0.7000000000000001 -> dropped.
    a = "a b c d e f g"
    b = "a b c d e f g h i j k l m"
    assert [v.keep for v, _ in filter_node_examples([a, b])] == [True, False]
    # 7 of 10 and 10 words: exactly 0.7 -> kept.
    c = "a b c d e f g x y z"
    d = "a b c d e f g u v w"
    assert [v.keep for v, _ in filter_node_examples([c, d])] == [True, True]
    capped = filter_node_examples(["one two", "three four", "five six"], max_examples=2)
    assert [v.reason for v, _ in capped] == [None, None, Reason.OVER_INSTANCE_LIMIT]


def test_allocation_is_the_papers_expression():
    assert allocation([2, 512, 612, 0], 1000) == [2, 500, 500, 0]
    assert allocation([2, 100, 300], 50) == [1, 13, 38]
    assert allocation([0, 0], 10) == [0, 0]


def test_sample_draws_like_the_paper_and_fixes_its_bugs():
    nodes = [SampleNode(3, True), SampleNode(50, True), SampleNode(40, False)]
    plan = sample_tree(nodes, 20, seed=42)
    rng = random.Random(42)
    want = [(0, j) for j in rng.sample(range(3), 2)] + [(1, j) for j in rng.sample(range(50), 19)]
    assert plan.picks == want[:20] and plan.truncated == 1
    assert plan.allocated == [2, 19, 0]  # the ineligible (pruned) node gives nothing
    short = sample_tree([SampleNode(3, True), SampleNode(2, True)], 10, seed=1)
    assert len(short.picks) == len(set(short.picks)) == 5  # no repeats, no crash
    assert short.shortfall == 5


def test_config_checks(tmp_path):
    with pytest.raises(ValueError):
        ExploreInstructConfig(max_depth=3, extend_nums=(1, 2))
    with pytest.raises(ValueError):
        RunConfig(recipe="explore_instruct", output_dir=str(tmp_path))
    assert Example("i").as_dict() == {"instruction": "i", "input": "", "output": ""}


def test_node_row_and_arrow_schema_agree():
    import pyarrow as pa

    from schemas.tree import NODE_SCHEMA, NodeRow

    py = {"str": pa.string(), "int": pa.int64(), "float": pa.float64(), "bool": pa.bool_()}
    fields = dataclasses.fields(NodeRow)
    assert [f.name for f in fields] == NODE_SCHEMA.names
    for f in fields:
        hint = str(f.type)
        assert NODE_SCHEMA.field(f.name).type == py[hint.replace(" | None", "")], f.name
        assert NODE_SCHEMA.field(f.name).nullable == ("None" in hint), f.name


@pytest.mark.parametrize("name", ["explore_instruct_demo", "explore_rewriting",
                                  "explore_brainstorming", "explore_math"])
def test_shipped_domain_configs_load(name):
    from conftest import ROOT

    from pipelines.config import load_config

    cfg = load_config(ROOT / "configs" / f"{name}.yaml")
    tree = steps.initial_tree(cfg)
    assert cfg.recipe == "explore_instruct" and tree[0].depth == 0
    assert all(e.input != "<noinput>" for n in tree for e in n.examples)
    assert len(cfg.explore_instruct.enrich_nums) == cfg.explore_instruct.max_depth + 1


def test_primed_completions_for_extend_only():
    cfg = _cfg(extend_api="completions", prime_answers=True)
    tree = steps.initial_tree(cfg)
    [extend] = steps.extend_request(tree[0], tree, 0, cfg)
    assert extend.api == "completions" and extend.prompt.endswith("subtask:\nNew subtask:")
    [enrich, *_] = enrich_requests(tree[1], tree, defaultdict(list), {}, 1, cfg)
    assert enrich.api == "chat" and enrich.prompt.endswith("Reason: r1")
    with pytest.raises(ValueError):
        ExploreInstructConfig(prime_answers=True)  # a chat answer cannot be primed


# --- seed examples: a repeat of one is not new, and they are not sampled back ----------------

def _example(node: str, instruction: str, origin: str, position: int) -> InstructionRecord:
    return steps.example_record(node, f"root/{node}", steps.STAGE_GIVEN if origin == "seed"
                                else "explore_enrich", 0 if origin == "seed" else 1, 0,
                                position, Example(instruction, "", "An answer."), origin=origin)


def test_a_machine_copy_of_a_seed_from_another_node_is_not_novel():
    from pipelines.recipes.explore_instruct.finish import filter_node

    seed = "Fix the spelling mistakes in this short paragraph."
    rows = [_example("b", "Rewrite this sentence so that it sounds more formal.", "seed", 0),
            _example("b", seed, "machine", 0),
            _example("b", "Turn this note into a polite email to a colleague.", "machine", 1)]
    judged = filter_node(rows, _cfg(), seeds=[seed, rows[0].instruction])
    verdicts = {r.instruction: (v.keep, v.reason, r.rouge_l_max) for r, v in judged}
    assert verdicts[seed] == (False, Reason.NOT_NOVEL, 1.0)
    assert verdicts[rows[2].instruction][0] and verdicts[rows[2].instruction][2] > 0.0
    # the paper's scope compares a node's examples only: the copy of node a's seed stays
    paper = filter_node(rows, _cfg(filter_scope="node"), seeds=[seed])
    assert {r.instruction: v.keep for r, v in paper}[seed]


def test_the_configs_seed_examples_are_not_sampled_back_unless_asked():
    from pipelines.recipes.explore_instruct.finish import sample_examples

    root = TaskNode(steps.given_node_id("root"), None, 0, "root", "Root", "", (), "root")
    rows = [_example(root.node_id, "Say the same thing in other words please.", "seed", 0),
            _example(root.node_id, "Write this paragraph again in simpler words.", "machine", 0)]
    ours = sample_examples(rows, [root], {}, _cfg(sample_size=10))
    assert [(r.origin, v.keep, v.reason) for r, v in ours] == [
        ("machine", True, None), ("seed", False, Reason.SEED_EXAMPLE)]
    paper = sample_examples(rows, [root], {}, _cfg(sample_size=10, sample_seed_examples=True))
    assert all(v.keep for _, v in paper)
