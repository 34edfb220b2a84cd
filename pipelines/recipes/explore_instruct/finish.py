"""Explore-Instruct after exploration: per-node filter, prune, sample, the nodes table, the tree.

Plain functions over records and nodes (the Beam assembly calls them after a GroupByKey, in
level order), plus `WriteTree`, which writes the tree in the paper's format beside the shards.
Source: reference/seed-algorithms.md §3.6.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from filters.explore import (
    PruneDecision,
    SampleNode,
    filter_node_examples,
    prune_names,
    sample_tree,
)
from filters.novelty import NoveltyIndex, NoveltyVerdict
from filters.verdict import Verdict
from pipelines.recipes.explore_instruct.config import ExploreInstructRun
from pipelines.recipes.explore_instruct.steps import Judged, example_order
from pipelines.transforms.route import gather_all
from schemas import InstructionRecord, Reason
from schemas.tree import Example, NodeRow, TaskNode, TreeView
from schemas.tree_format import dump_tree

SUMMARY_FILE = "summary.json"


def filter_node(records: Iterable[InstructionRecord], cfg: ExploreInstructRun,
                seeds: Sequence[str] = ()) -> list[Judged]:
    """The paper's per-node filter over one node's examples, in the node's order. With
    `filter_scope: tree`, every machine example is first checked against `seeds` (every given
    example of the tree): a repeat of one is dropped there and takes no part in its node's
    filter; the others carry the larger of the two scores in `rouge_l_max`."""
    ei = cfg.explore_instruct
    ordered = sorted(records, key=example_order)
    near_seed: dict[int, NoveltyVerdict] = {}
    if ei.filter_scope == "tree" and seeds:
        index = NoveltyIndex(seeds, threshold=ei.filter_threshold)
        near_seed = {i: index.check(r.instruction) for i, r in enumerate(ordered)
                     if r.origin != "seed"}
    rest = [i for i in range(len(ordered)) if i not in near_seed or near_seed[i].accepted]
    results = dict(zip(rest, filter_node_examples(
        [ordered[i].instruction for i in rest], ei.filter_threshold, ei.max_example_num),
        strict=True))
    judged: list[Judged] = []
    for i, record in enumerate(ordered):
        seed = near_seed.get(i)
        if seed is not None and not seed.accepted:
            judged.append((replace(record, rouge_l_max=seed.score,
                                   most_similar=seed.most_similar), Verdict.drop(
                Reason.NOT_NOVEL, f"ROUGE-L {seed.score:.4f} > {ei.filter_threshold} to a seed "
                "example of the tree", seed.score)))
            continue
        verdict, similar = results[i]
        score = verdict.score or 0.0
        if seed is not None and seed.score > score:
            score, similar = seed.score, seed.most_similar
            verdict = replace(verdict, score=score)
        judged.append((replace(record, rouge_l_max=score, most_similar=similar), verdict))
    return judged


def prune_tree(tree: Iterable[TaskNode], cfg: ExploreInstructRun
               ) -> list[tuple[str, PruneDecision]]:
    nodes = TreeView(tree).level_order()
    decisions = prune_names([n.raw_task_name for n in nodes], cfg.explore_instruct.prune_threshold)
    return [(n.node_id, d) for n, d in zip(nodes, decisions, strict=True)]


def sample_examples(records: Iterable[InstructionRecord], tree: Sequence[TaskNode],
                    pruned: Mapping[str, PruneDecision], cfg: ExploreInstructRun) -> list[Judged]:
    """The paper's sample over the filtered examples; every example is kept or says why not."""
    ei = cfg.explore_instruct
    nodes = TreeView(tree).level_order()
    by_node: dict[str, list[InstructionRecord]] = defaultdict(list)
    for record in records:
        by_node[str(record.node_id)].append(record)
    examples = [sorted(by_node.get(n.node_id, []), key=example_order) for n in nodes]
    seed_rows: list[InstructionRecord] = []
    if not ei.sample_seed_examples and ei.tree_dir is None:  # the config's examples went in
        seed_rows = [r for rows in examples for r in rows if r.origin == "seed"]
        examples = [[r for r in rows if r.origin != "seed"] for rows in examples]

    def why_not(node: TaskNode) -> Verdict | None:
        if node.depth > ei.sample_max_depth:
            return Verdict.drop(Reason.BEYOND_SAMPLE_DEPTH, f"depth {node.depth} > "
                                f"{ei.sample_max_depth}")
        decision = pruned.get(node.node_id)
        if ei.exclude_pruned and decision is not None and decision.pruned:
            return Verdict.drop(Reason.PRUNED_TASK, f"name like {decision.most_similar!r}",
                                decision.score)
        return None

    excluded = [why_not(n) for n in nodes]
    plan = sample_tree([SampleNode(len(ex), why is None) for ex, why in zip(
        examples, excluded, strict=True)], ei.sample_size, cfg.seed, ei.sample_weight_cap)
    picked = set(plan.picks)
    judged: list[Judged] = []
    for i, (rows, why) in enumerate(zip(examples, excluded, strict=True)):
        for j, record in enumerate(rows):
            if (i, j) in picked:
                judged.append((record, Verdict.ok()))
            else:
                judged.append((record, why or Verdict.drop(
                    Reason.NOT_SAMPLED, f"node allocation {plan.allocated[i]} of {len(rows)}")))
    judged += [(r, Verdict.drop(Reason.SEED_EXAMPLE, "given in the config or tree; "
                                "sample_seed_examples: false")) for r in seed_rows]
    return judged


def node_rows(tree: Iterable[TaskNode], counts: Mapping[tuple[str, str], int],
              pruned: Mapping[str, PruneDecision], cfg: ExploreInstructRun) -> list[NodeRow]:
    """The `nodes` table: each node with its attempts, stop reason and example counts."""
    ei = cfg.explore_instruct
    view = TreeView(tree)
    rows = []
    for i, node in enumerate(view.level_order()):
        children = view.children(node.node_id)
        new = sum(c.origin == "explored" for c in children)
        requests = counts.get(("extend_requests", node.node_id), 0)
        if node.depth >= ei.max_depth:
            stop = "depth_limit"
        elif new >= ei.extend_num(node.depth):
            stop = "target_reached"
        elif len(children) >= ei.max_child_num:
            stop = "breadth_cap"
        else:
            stop = "attempts_exhausted"
        decision = pruned.get(node.node_id, PruneDecision(False, 0.0, None))
        rows.append(NodeRow(
            id=node.node_id, parent_id=node.parent_id, depth=node.depth,
            task_name=node.task_name, raw_task_name=node.raw_task_name, reason=node.reason,
            path=node.path, level_order=i, origin=node.origin, children=len(children),
            extend_requests=requests, extend_stop=stop, new_children=new,
            examples_given=len(node.examples),
            enrich_requests=counts.get(("enrich_requests", node.node_id), 0),
            examples_enriched=counts.get(("examples_enriched", node.node_id), 0),
            examples_filtered=counts.get(("examples_filtered", node.node_id), 0),
            examples_sampled=counts.get(("examples_sampled", node.node_id), 0),
            pruned=decision.pruned, prune_score=decision.score if node.depth else None,
            pruned_similar_to=decision.most_similar if decision.pruned else None))
    return rows


def tree_summary(rows: Sequence[NodeRow], sample_size: int | None = None) -> dict[str, Any]:
    """Per-depth counts: what the run's note reports (nodes, attempts, examples); with
    `sample_size`, also what the sample delivered and its shortfall (too few candidates)."""
    depths: dict[int, Counter] = defaultdict(Counter)
    for row in rows:
        c = depths[row.depth]
        c["nodes"] += 1
        c["explored_nodes"] += row.origin == "explored"
        c["pruned_nodes"] += row.pruned
        c["extend_requests"] += row.extend_requests
        c[f"stop_{row.extend_stop}"] += 1
        for key in ("examples_given", "enrich_requests", "examples_enriched",
                    "examples_filtered", "examples_sampled"):
            c[key] += getattr(row, key)
    per_depth = {str(d): dict(sorted(c.items())) for d, c in sorted(depths.items())}
    total: Counter = sum(depths.values(), Counter())
    summary: dict[str, Any] = {"depths": per_depth, "total": dict(sorted(total.items()))}
    if sample_size is not None:
        sampled = total["examples_sampled"]
        summary["sample"] = {"requested": sample_size, "sampled": sampled,
                             "shortfall": max(sample_size - sampled, 0)}
    return summary


class _WriteTreeFn(beam.DoFn):
    def __init__(self, directory: str, sample_size: int | None) -> None:
        self._directory = directory
        self._sample_size = sample_size

    def process(self, element: tuple[int, Iterable[tuple[str, Any]]]) -> Iterable[str]:
        nodes: list[TaskNode] = []
        rows: list[NodeRow] = []
        examples: dict[str, list[InstructionRecord]] = defaultdict(list)
        for kind, item in element[1]:
            if kind == "node":
                nodes.append(item)
            elif kind == "row":
                rows.append(item)
            else:
                examples[str(item.node_id)].append(item)
        by_node = {k: [Example(r.instruction, r.input, r.output)
                       for r in sorted(v, key=example_order)] for k, v in examples.items()}
        rows.sort(key=lambda r: r.level_order)
        files = dump_tree(nodes, by_node, [r.task_name for r in rows if r.pruned])
        files[SUMMARY_FILE] = json.dumps(tree_summary(rows, self._sample_size), indent=2) + "\n"
        for name, text in sorted(files.items()):
            path = FileSystems.join(self._directory, name)
            with FileSystems.create(path, mime_type="application/json") as handle:
                handle.write(text.encode("utf-8"))
            yield path


class WriteTree(beam.PTransform):
    """Write ("node", TaskNode) / ("row", NodeRow) / ("example", record) elements as the
    paper's tree directory (examples: those kept by the per-node filter), plus summary.json
    (with `sample_size`: requested, sampled and the shortfall)."""

    def __init__(self, directory: str, sample_size: int | None = None) -> None:
        super().__init__()
        self._directory = directory
        self._sample_size = sample_size

    def expand(self, items: beam.PCollection) -> beam.PCollection:
        return (gather_all(items)
                | "Write" >> beam.ParDo(_WriteTreeFn(self._directory, self._sample_size)))
