"""Reference near-duplicate detection: straightforward `datasketch` use (tests and bench only).

What a typical dedup script does: one `MinHash` per text fed shingle by shingle with
`update`, every sketch inserted into one in-memory `MinHashLSH(params=(bands, rows))`, each
text queried, candidates kept when `MinHash.jaccard >= threshold`, clusters by a breadth-first
walk over those links, survivor = smallest (order key, id). Shingling is ours
(`filters.near_dup.shingles`), so both sides see the same sets; everything after it is
datasketch's or deliberately naive, to check `filters.near_dup` against.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from datasketch import MinHash, MinHashLSH

from filters.near_dup import MinHashParams, NearDupMatch, shingles


def reference_near_duplicates(ids: Sequence[str], texts: Sequence[str], params: MinHashParams,
                              order: Sequence[Any] | None = None) -> dict[str, NearDupMatch]:
    """id -> match for every record in a cluster of two or more (same contract as ours)."""
    lsh = MinHashLSH(threshold=params.threshold, num_perm=params.num_perm,
                     params=(params.bands, params.rows))
    sketches: dict[str, MinHash] = {}
    for rid, text in zip(ids, texts, strict=True):
        grams = shingles(text, params.shingle_size)
        if not grams:
            continue
        m = MinHash(num_perm=params.num_perm, seed=params.seed, scheme=params.scheme)
        for gram in grams:
            m.update(gram.encode("utf-8"))
        sketches[rid] = m
        lsh.insert(rid, m)

    links: dict[str, set[str]] = {rid: set() for rid in sketches}
    for rid, m in sketches.items():
        for other in lsh.query(m):
            if other != rid and m.jaccard(sketches[other]) >= params.threshold:
                links[rid].add(other)
                links[other].add(rid)

    key = {rid: (order[i] if order is not None else 0, rid) for i, rid in enumerate(ids)}
    seen: set[str] = set()
    out: dict[str, NearDupMatch] = {}
    for start in sketches:
        if start in seen or not links[start]:
            continue
        component, frontier = {start}, [start]
        while frontier:
            node = frontier.pop()
            for nxt in links[node] - component:
                component.add(nxt)
                frontier.append(nxt)
        seen |= component
        survivor = min(component, key=key.__getitem__)
        cluster = min(component)
        for rid in component:
            out[rid] = NearDupMatch(cluster, survivor, sketches[rid].jaccard(sketches[survivor]))
    return out
