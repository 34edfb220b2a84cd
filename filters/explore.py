"""Explore-Instruct's prune, per-node filter and sampling, as plain functions.

Source: Wan et al. 2023, `generate_instruction.py` actions `prune`, `filter`, `sample`
(reference/seed-algorithms.md §3.6). ROUGE-L is rouge-score's (no stemmer) through
`NoveltyIndex`, whose decisions equal the pairwise loop of the paper; `> threshold` rejects.

Bugs of the paper's code fixed here (§6.11-12): pruned nodes really leave the sample when
`exclude_pruned` is set (the paper computed them and then sampled them anyway); the final
top-up from the root's examples takes only examples not already drawn and never more than
exist (the paper's `random.sample` raised, or repeated rows). The allocation and the order of
random draws are the paper's, so on the same tree and seed the same examples are drawn.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from filters.novelty import NoveltyIndex
from filters.verdict import Verdict
from schemas.reasons import Reason


@dataclass(frozen=True, slots=True)
class PruneDecision:
    pruned: bool
    score: float  # max ROUGE-L against the names kept before it (0.0 for the root)
    most_similar: str | None


def prune_names(names_in_level_order: Sequence[str], threshold: float = 0.7
                ) -> list[PruneDecision]:
    """The paper's prune: the root's name starts the pool; in level order, a name with
    ROUGE-L > threshold to a pooled name is pruned, otherwise it joins the pool."""
    if not names_in_level_order:
        return []
    index = NoveltyIndex([names_in_level_order[0]], threshold=threshold, exact_scores=True)
    decisions = [PruneDecision(False, 0.0, None)]
    for name in names_in_level_order[1:]:
        verdict = index.check(name)
        decisions.append(PruneDecision(not verdict.accepted, verdict.score,
                                       verdict.most_similar))
        if verdict.accepted:
            index.add(name)
    return decisions


def filter_node_examples(instructions: Sequence[str], threshold: float = 0.7,
                         max_examples: int | None = None
                         ) -> list[tuple[Verdict, str | None]]:
    """The paper's per-node filter: in order, an instruction with ROUGE-L > threshold to an
    instruction kept before it (same node only) is dropped. Each verdict carries the exact
    maximum score, paired with the kept instruction that reached it.

    `max_examples` is the paper's per-node cap (60000), applied to the kept examples.
    """
    index = NoveltyIndex(threshold=threshold, exact_scores=True)
    results: list[tuple[Verdict, str | None]] = []
    kept = 0
    for text in instructions:
        check = index.check(text)
        if not check.accepted:
            verdict = Verdict.drop(Reason.NOT_NOVEL, f"ROUGE-L {check.score:.4f} > {threshold}",
                                   check.score)
        elif max_examples is not None and kept >= max_examples:
            verdict = Verdict.drop(Reason.OVER_INSTANCE_LIMIT, f"> {max_examples}", check.score)
        else:
            index.add(text)
            kept += 1
            verdict = Verdict.ok(check.score)
        results.append((verdict, check.most_similar))
    return results


def allocation(sizes: Sequence[int], total: int, weight_cap: int = 500) -> list[int]:
    """Examples to draw per node: `min(int(N * min(len, cap) / S) + 1, len)`, S the sum of
    capped sizes (the paper's float expression, evaluated in its order)."""
    weights = [min(size, weight_cap) for size in sizes]
    s = sum(weights)
    if s == 0:
        return [0] * len(sizes)
    return [min(int(total * w / s) + 1, size) for w, size in zip(weights, sizes, strict=True)]


@dataclass(frozen=True, slots=True)
class SampleNode:
    """One node as sampling sees it: its examples in node order, and whether it may be used."""

    size: int
    eligible: bool  # depth <= sample_max_depth and (not pruned or pruned allowed)


@dataclass(frozen=True, slots=True)
class SamplePlan:
    picks: list[tuple[int, int]]  # (node index, example index) in output order
    allocated: list[int]  # per node, what the allocation asked for (0 if not eligible)
    truncated: int  # draws cut by `data[:N]`
    topped_up: int  # examples added from the root to reach N
    shortfall: int  # N minus what could be delivered


def sample_tree(nodes: Sequence[SampleNode], total: int, seed: int = 42,
                weight_cap: int = 500) -> SamplePlan:
    """The paper's `sample` over nodes in level order (index 0 = the root).

    One RNG seeded with `seed` draws `random.sample(examples, k)` node after node, exactly as
    the paper's `random.seed(42)` run does; the concatenation is cut to N; if short, the rest
    is drawn from the root's examples that were not drawn yet.
    """
    rng = random.Random(seed)
    eligible = [i for i, n in enumerate(nodes) if n.eligible]
    counts = allocation([nodes[i].size for i in eligible], total, weight_cap)
    allocated = [0] * len(nodes)
    drawn: list[tuple[int, int]] = []
    for i, k in zip(eligible, counts, strict=True):
        allocated[i] = k
        drawn += [(i, j) for j in rng.sample(range(nodes[i].size), k)]
    picks = drawn[:total]
    truncated = len(drawn) - len(picks)
    topped_up = 0
    if len(picks) < total and nodes and nodes[0].eligible:
        taken = {j for i, j in picks if i == 0}
        rest = [j for j in range(nodes[0].size) if j not in taken]
        extra = rng.sample(rest, min(total - len(picks), len(rest)))
        picks += [(0, j) for j in extra]
        topped_up = len(extra)
    return SamplePlan(picks, allocated, truncated, topped_up, total - len(picks))
