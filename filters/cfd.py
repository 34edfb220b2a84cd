"""Complexity-first Diverse sampling (Cf-D, #InsTag Algorithm 1), in O(total tags) time.

Algorithm 1 as written: sort the pool by tag count, descending (stable: ties keep the input
order); then repeat passes over the remaining queries, each pass starting from an empty tag
set T_B and taking a query iff it brings a tag not yet in T_B (|T_B ∪ T_q| > |T_B|), removing
it from the pool; stop as soon as N queries are taken. A literal implementation rescans the
whole pool every pass and removes from a list per pick (O(passes × pool) set tests plus
O(pool) per removal: `bench/cfd_reference.py`).

The same selection, computed per tag instead of per query: in a pass, the first remaining
query (in sorted order) that holds tag t is always taken, since nothing taken before it in
that pass holds t; and a taken query is always the first remaining holder of the new tag it
brings, since an earlier holder would have been taken and put the tag in T_B. So a pass takes
exactly {first remaining holder of t : t a tag of a remaining query}, in sorted order, cut
at the budget. Each tag keeps a pointer into its holders (sorted positions) that only moves
forward, past removed queries: every tag's pointer advances at least once per pass, so the
work over all passes is O(total (query, tag) pairs), plus the sort.

Tag-less queries are never taken (they add no tag); when only they remain, no tag has a
holder, the pass takes nothing and selection stops with fewer than N (the paper's loop would
not terminate).

Memory: the whole pool's tag sets, as int arrays: ~16 bytes per (query, tag) pair and ~24
bytes per query, plus the input itself (1M queries x 5 tags ≈ 100 MB as arrays).
"""

from __future__ import annotations

from collections.abc import Collection, Hashable, Iterable, Sequence
from dataclasses import dataclass
from itertools import chain

import numpy as np


@dataclass(frozen=True, slots=True)
class Pick:
    index: int  # position of the query in the input sequence
    pass_no: int  # 1-based pass that took it
    rank: int  # 0-based order of selection (the order of D_s)


def complexity_first_diverse(tag_sets: Sequence[Collection[Hashable]], n: int) -> list[Pick]:
    """Algorithm 1's selection of at most `n` queries from `tag_sets` (in input order)."""
    if n <= 0 or not tag_sets:
        return []
    distinct = [set(tags) for tags in tag_sets]
    sizes = np.fromiter(map(len, distinct), dtype=np.int64, count=len(distinct))
    flat = list(chain.from_iterable(distinct))
    vocab = {tag: i for i, tag in enumerate(dict.fromkeys(flat))}
    tags_arr = np.fromiter(map(vocab.__getitem__, flat), dtype=np.int64, count=len(flat))
    owners = np.repeat(np.arange(len(distinct), dtype=np.int64), sizes)
    order = np.argsort(-sizes, kind="stable")  # complexity first; ties keep input order
    position = np.empty_like(order)
    position[order] = np.arange(len(order))
    holders_pos = position[owners]
    by_tag = np.lexsort((holders_pos, tags_arr))  # holders of each tag, in sorted order
    holders = holders_pos[by_tag].tolist()
    ends = np.cumsum(np.bincount(tags_arr, minlength=len(vocab))).tolist()
    heads = [0, *ends[:-1]]
    return _passes(holders, heads, ends, order.tolist(), n)


def _passes(holders: list[int], heads: list[int], ends: list[int], order: list[int],
            n: int) -> list[Pick]:
    removed = bytearray(len(order))
    active = [t for t in range(len(ends)) if heads[t] < ends[t]]
    picks: list[Pick] = []
    pass_no = 0
    while len(picks) < n and active:
        pass_no += 1
        firsts: set[int] = set()
        still: list[int] = []
        for t in active:
            h, e = heads[t], ends[t]
            while h < e and removed[holders[h]]:
                h += 1
            heads[t] = h
            if h < e:
                firsts.add(holders[h])
                still.append(t)
        active = still
        for pos in sorted(firsts)[: n - len(picks)]:
            removed[pos] = 1
            picks.append(Pick(order[pos], pass_no, len(picks)))
    return picks


@dataclass(frozen=True)
class SubsetStats:
    """Complexity (mean tags per query) and diversity (coverage of the pool's tags)."""

    size: int
    mean_tags: float
    distinct_tags: int
    coverage: float  # distinct tags of the subset / distinct tags of the pool


def subset_stats(tag_sets: Iterable[Collection[Hashable]], pool_tags: int) -> SubsetStats:
    size = total = 0
    seen: set[Hashable] = set()
    for tags in tag_sets:
        size += 1
        distinct = set(tags)
        total += len(distinct)
        seen |= distinct
    return SubsetStats(size, total / size if size else 0.0, len(seen),
                       len(seen) / pool_tags if pool_tags else 0.0)
