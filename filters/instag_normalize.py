"""#InsTag normalization steps 3 and 4, and the four steps in order over in-memory tag sets.

Decisions the paper leaves open (reference/seed-algorithms.md §4.2, §6.14), made here:

* Semantic aggregation: DBSCAN over L2-normalized tag embeddings with metric "cosine" and
  eps = 0.05 (cosine distance, i.e. similarity >= 0.95). `min_samples = 1`: every tag is a
  core point, so clusters are the connected components of the "distance <= eps" graph and no
  tag is noise; `min_samples = 2` gives the same merges (sklearn counts the point itself), the
  sklearn default 5 merges less. A cluster is named by its most frequent tag (ties: the
  lexicographically smallest). Tags are clustered in sorted order, so results do not depend on
  the order in which they were counted.
* Association aggregation: FP-Growth (mlxtend) mines the frequent tag pairs over the queries'
  tag sets with an absolute min support (40); a rule A -> B holds when count(A and B) /
  count(A) >= min confidence (0.99), computed from integer counts. Only one-tag -> one-tag
  rules can merge (a set of tags cannot be folded into one). Merge direction: A -> B folds the
  antecedent A into the consequent B (B is present in >= 99% of A's queries, so A adds almost
  nothing). If A has several consequents, the most confident wins, then the most frequent,
  then the smallest name. Merges are followed recursively (A -> B -> C folds A into C); tags
  that imply each other in a cycle fold into the cycle's most frequent member.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from filters.instag import (
    StepStats,
    TagMap,
    apply_map,
    compose,
    count_tags,
    frequency_step,
    most_frequent,
    resolve_count,
    rule_step,
    step_stats,
)
from filters.tag_embeddings import embedder

Embedder = Callable[[Sequence[str]], "object"]  # texts -> (n, d) array of unit vectors


@dataclass(frozen=True)
class NormalizeParams:
    """The four steps' switches and constants; defaults are the paper's."""

    min_tag_count: float = 20.0  # α: a count (>= 1) or a fraction of the pool (< 1)
    rule_aggregation: bool = True
    stem: bool = True
    semantic_aggregation: bool = True
    embedding_model: str = "all-minilm-l6-v2"
    semantic_eps: float = 0.05  # cosine distance
    semantic_min_samples: int = 1
    association_aggregation: bool = True
    min_support: float = 40.0  # a count (>= 1) or a fraction of the pool (< 1)
    min_confidence: float = 0.99


# --- step 3: semantic aggregation -----------------------------------------------------------

def semantic_step(counts: Mapping[str, int], embed: Embedder, eps: float = 0.05,
                  min_samples: int = 1) -> tuple[TagMap, StepStats]:
    """Cluster tag embeddings with DBSCAN (cosine); fold each cluster into its most frequent."""
    params = {"eps": eps, "min_samples": min_samples, "metric": "cosine"}
    tags = sorted(counts)
    if len(tags) < 2:
        return {t: t for t in tags}, step_stats("semantic", tags, {t: t for t in tags}, params)
    from sklearn.cluster import DBSCAN

    vectors = embed(tags)
    labels = DBSCAN(eps=eps, min_samples=min_samples, metric="cosine").fit_predict(vectors)
    clusters: dict[int, list[str]] = {}
    mapping: TagMap = {}
    for tag, label in zip(tags, labels, strict=True):
        if label < 0:  # noise: a cluster of its own
            mapping[tag] = tag
        else:
            clusters.setdefault(int(label), []).append(tag)
    for members in clusters.values():
        head = most_frequent(members, counts)
        mapping.update({t: head for t in members})
    return mapping, step_stats("semantic", tags, mapping, params)


# --- step 4: association aggregation --------------------------------------------------------

def association_rows(tags: Iterable[str], counts: Mapping[str, int], min_count: float
                     ) -> tuple[str, ...] | None:
    """A query's frequent tags if it can hold a frequent pair (>= 2 of them), else None.

    Only these rows go to FP-Growth: single-tag counts come from `counts` (a combiner in the
    pipeline), so the one worker that mines pairs holds only multi-tag queries.
    """
    frequent = sorted({t for t in tags if counts.get(t, 0) >= min_count})
    return tuple(frequent) if len(frequent) >= 2 else None


def frequent_pairs(rows: Sequence[Collection[str]], min_count: int) -> dict[tuple[str, str], int]:
    """Pairs of tags in >= min_count rows, mined by mlxtend's FP-Growth (max_len = 2).

    `rows` are only the multi-tag queries, so they can be fewer than `min_count` (a count taken
    from the whole pool): then no pair can be frequent, and FP-Growth would refuse the support
    fraction (> 1) rather than answer that."""
    if not rows or min_count > len(rows):
        return {}
    import pandas as pd
    from mlxtend.frequent_patterns import fpgrowth
    from scipy import sparse

    columns = sorted({t for row in rows for t in row})
    index = {t: i for i, t in enumerate(columns)}
    r = [i for i, row in enumerate(rows) for _ in row]
    c = [index[t] for row in rows for t in row]
    matrix = sparse.csr_matrix((np.ones(len(c), dtype=bool), (r, c)),
                               shape=(len(rows), len(columns)))
    frame = pd.DataFrame.sparse.from_spmatrix(matrix, columns=columns)
    # mlxtend turns the fraction back into a count with ceil(): aim half a row below the count
    # so that floating point cannot push it one above.
    found = fpgrowth(frame, min_support=(min_count - 0.5) / len(rows), use_colnames=True,
                     max_len=2)
    pairs = {}
    for support, itemset in zip(found["support"], found["itemsets"], strict=True):
        if len(itemset) == 2:
            a, b = sorted(itemset)
            pairs[(a, b)] = round(support * len(rows))
    return pairs


def association_step(counts: Mapping[str, int], rows: Sequence[Collection[str]],
                     min_count: float, min_confidence: float = 0.99
                     ) -> tuple[TagMap, StepStats, list[dict[str, object]]]:
    """Fold A into B for every rule A -> B (support >= min_count, confidence >= min)."""
    params = {"min_support": min_count, "min_confidence": min_confidence}
    need = max(1, math.ceil(min_count))
    pairs = frequent_pairs(rows, need)
    best: dict[str, tuple[float, int, str]] = {}  # antecedent -> (-conf, -count(B), B)
    rules = []
    for (a, b), both in sorted(pairs.items()):
        for x, y in ((a, b), (b, a)):
            confidence = both / counts[x]
            if confidence >= min_confidence:
                rules.append({"from": x, "to": y, "support": both,
                              "confidence": round(confidence, 6)})
                key = (-confidence, -counts[y], y)
                if x not in best or key < best[x]:
                    best[x] = key
    target = {x: key[2] for x, key in best.items()}
    mapping = {t: _resolve(t, target, counts) for t in counts}
    return mapping, step_stats("association", counts, mapping, params), rules


def _resolve(tag: str, target: Mapping[str, str], counts: Mapping[str, int]) -> str:
    """Follow A -> B -> C ... to a tag with no rule, or to the most frequent tag of a cycle."""
    path: list[str] = []
    seen: set[str] = set()
    while tag in target and tag not in seen:
        seen.add(tag)
        path.append(tag)
        tag = target[tag]
    if tag not in seen:
        return tag
    cycle = path[path.index(tag):]
    return most_frequent(cycle, counts)


# --- the four steps, as plans over counts --------------------------------------------------
# Each plan_* function takes the counts of the current vocabulary (from a Beam combiner in
# the pipeline, from `recount` in memory) and extends the raw -> current tag mapping.

@dataclass(frozen=True)
class Plan:
    """The raw -> normalized mapping so far, the steps that made it, the pool size."""

    mapping: TagMap
    pool: int
    steps: tuple[StepStats, ...] = ()
    rules: tuple[dict[str, object], ...] = ()  # association rules found (step 4)

    def then(self, step_map: Mapping[str, str], stats: StepStats) -> Plan:
        return replace(self, mapping=compose(self.mapping, step_map),
                       steps=(*self.steps, stats))


def plan_frequency_and_rules(raw_counts: Mapping[str, int], pool: int,
                             params: NormalizeParams) -> Plan:
    """Steps 1 and 2: both need only the raw tags' counts (step 1 drops, never merges)."""
    step_map, stats = frequency_step(raw_counts, resolve_count(params.min_tag_count, pool))
    plan = Plan(step_map, pool, (stats,))
    if params.rule_aggregation:
        kept = {t: c for t, c in raw_counts.items() if t in step_map}
        plan = plan.then(*rule_step(kept, params.stem))
    return plan


def plan_semantic(plan: Plan, counts: Mapping[str, int], params: NormalizeParams,
                  embed: Embedder | None = None) -> Plan:
    """Step 3 over the counts of the tags `plan` yields."""
    if not params.semantic_aggregation:
        return plan
    if embed is None:
        embed = embedder(params.embedding_model)
    return plan.then(*semantic_step(counts, embed, params.semantic_eps,
                                    params.semantic_min_samples))


def association_min_count(plan: Plan, params: NormalizeParams) -> float:
    return resolve_count(params.min_support, plan.pool)


def plan_association(plan: Plan, counts: Mapping[str, int], rows: Sequence[Collection[str]],
                     params: NormalizeParams) -> Plan:
    """Step 4; `rows` are the `association_rows` of the queries under `plan`."""
    if not params.association_aggregation:
        return plan
    step_map, stats, rules = association_step(counts, rows, association_min_count(plan, params),
                                              params.min_confidence)
    return replace(plan.then(step_map, stats), rules=tuple(rules))


def normalize_tag_sets(tag_sets: Sequence[Collection[str]], params: NormalizeParams,
                       embed: Embedder | None = None) -> Plan:
    """Steps 1-4 over in-memory tag sets, with exact recounts between steps: the same plan
    the Beam `NormalizeTags` computes with combiners. The pool size for relative thresholds
    is len(tag_sets), tag-less queries included."""
    plan = plan_frequency_and_rules(count_tags(tag_sets), len(tag_sets), params)
    plan = plan_semantic(plan, recount(tag_sets, plan.mapping), params, embed)
    if not params.association_aggregation:
        return plan
    counts = recount(tag_sets, plan.mapping)
    min_count = association_min_count(plan, params)
    rows = [r for tags in tag_sets
            if (r := association_rows(apply_map(plan.mapping, tags), counts, min_count))]
    return plan_association(plan, counts, rows, params)


def recount(tag_sets: Iterable[Iterable[str]], mapping: Mapping[str, str]) -> dict[str, int]:
    """Query counts of the mapped tags: merged tags count a query once."""
    return count_tags(apply_map(mapping, tags) for tags in tag_sets)
