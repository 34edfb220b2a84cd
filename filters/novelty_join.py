"""Self-Instruct's novelty rule as a set-similarity self-join plus a greedy scan (pure, no Beam).

``filters.novelty.greedy_novelty`` decides texts one by one against a growing in-memory index;
that needs every text in one process. This module splits the same rule into pieces a
distributed runner can spread out, with identical decisions:

1. ``RarityOrder``: one global total order of *elements* (the k-th occurrence of token t is the
   element ``t`` for k = 1 and ``t#k`` after that, so a token multiset becomes a set and the
   multiset overlap, an upper bound of the LCS, becomes a set overlap), rarest first, built
   from document frequencies.
2. ``prepare`` + ``postings``: each text emits its *prefix* elements under that order. Prefix
   filtering: if two texts share at least ``alpha`` elements, their smallest shared element
   lies among the first ``len - alpha + 1`` elements of each. A pair can only score
   ``> threshold`` when its LCS reaches ``need(la, lb)`` (``PrefixBounds``), so a prefix of
   ``len - need(len, shortest feasible partner) + 1`` elements finds every pair that can decide.
3. ``verify_group``: the texts sharing one prefix element meet in one group. A pair is verified
   only in the group of its *smallest* shared element (so exactly once, no duplicate work or
   edges), only if the length bound and the positional overlap bound (at most ``len - pos``
   elements shared from that element on, PPJoin's positional filter) leave room for
   ``need``, and then gets its exact LCS from rapidfuzz and rouge-score's own float F-measure.
4. ``greedy_scan``: only pairs scoring ``> threshold`` ("edges") matter for decisions. In order,
   a record is rejected iff it has an edge to an earlier record that was accepted; a record with
   no edge at all is accepted without being looked at, so the scan needs only the edges.

Bounds are compared with ``threshold - 1e-9`` (``filters.prefix_bounds``, shared with
``filters.novelty``): rouge-score's ``2PR/(P+R)`` differs from ``2*lcs/(la+lb)`` by a few ulps,
so no pair that could score ``> threshold`` in floating point is ever pruned; the decision
itself uses the exact float.

Hot elements: a group's cost is quadratic in its size, and texts made of common words (or a
tiny vocabulary) put the same elements in many prefixes. ``split_plan`` splits an element with
more than ``hot_size`` postings into ``B`` buckets by a stable hash; bucket pair (b, c) becomes
its own group, so each posting is sent ``B`` times and each pair of the element is still seen
in exactly one group. That bounds group *size*, not total work: when nearly all texts are near
duplicates of each other, candidate pairs (and edges) are quadratic whatever the layout.
"""

from __future__ import annotations

import bisect
import math
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from rapidfuzz import process
from rapidfuzz.distance import LCSseq

from filters import rouge
from filters.prefix_bounds import PrefixBounds
from filters.rouge import rouge_l_from_counts, tokenize

__all__ = [
    "POOL",
    "RECORD",
    "Best",
    "Node",
    "Posting",
    "Prepared",
    "RarityOrder",
    "ScoredPair",
    "better",
    "bucket_of",
    "elements",
    "greedy_scan",
    "pick_best",
    "postings",
    "prepare",
    "split_plan",
    "text_elements",
    "verify_group",
]

# Node kinds; a node is (kind, name). Pool texts sort before every record and are never judged.
POOL, RECORD = 0, 1
# Below this many partners a Python loop of LCS calls beats one batched cdist call.
_BATCH_MIN = 24

Node = tuple[int, str]
GroupKey = tuple[int, int, int]  # (element rank, bucket b, bucket c) with b <= c


class Prepared(NamedTuple):
    """A text ready to join: LCS code (one char per token) and its prefix element ranks."""

    node: Node
    order: Any  # total order key: pool (POOL, i) before records (RECORD, user key, id)
    code: str | tuple[int, ...]
    prefix: tuple[int, ...]  # ranks of the prefix elements, ascending (rarest first)


class Posting(NamedTuple):
    """One text filed under one of its prefix elements (at ``position`` in its prefix)."""

    node: Node
    order: Any
    code: str | tuple[int, ...]
    position: int
    before: tuple[int, ...]  # the prefix elements before ``position``
    bucket: int


class ScoredPair(NamedTuple):
    """An exactly scored pair; ``later`` comes after ``earlier`` in the order."""

    later: Node
    later_order: Any
    earlier: Node
    earlier_order: Any
    score: float


class Best(NamedTuple):
    """The most similar earlier text found for some record (ties: the earliest)."""

    score: float
    order: Any
    node: Node
    text: str


def elements(tokens: Sequence[str]) -> list[str]:
    """The token multiset as a set: the k-th occurrence (k >= 2) of ``t`` is ``"t#k"``.

    rouge-score tokens match ``[a-z0-9]+``, so ``#`` cannot clash with a token.
    """
    seen: dict[str, int] = {}
    out = []
    for t in tokens:
        k = seen.get(t, 0) + 1
        seen[t] = k
        out.append(t if k == 1 else f"{t}#{k}")
    return out


def text_elements(text: str) -> list[str]:
    """The distinct elements of ``text`` under rouge-score's tokenizer (what DF counts)."""
    return elements(tokenize(text))


@dataclass(frozen=True, slots=True)
class RarityOrder:
    """The global element order (rarest first) and dense token ids for the LCS codes.

    Any fixed total order gives the same decisions; rare-first keeps prefixes selective (a
    common word rarely lands in a prefix, so it does not make a huge group).
    """

    rank: Mapping[str, int]
    token_ids: Mapping[str, int]

    @classmethod
    def from_counts(cls, counts: Iterable[tuple[str, int]]) -> RarityOrder:
        """From (element, document frequency) pairs; ties broken by the element string."""
        ordered = sorted(counts, key=lambda kv: (kv[1], kv[0]))
        rank = {e: r for r, (e, _) in enumerate(ordered)}
        vocabulary = sorted(e for e in rank if "#" not in e)  # first occurrences = the tokens
        return cls(rank, {t: i for i, t in enumerate(vocabulary)})

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> RarityOrder:
        """Count document frequencies in one process (tests, small inputs)."""
        df: dict[str, int] = {}
        for text in texts:
            for e in text_elements(text):
                df[e] = df.get(e, 0) + 1
        return cls.from_counts(df.items())

    def code(self, tokens: Sequence[str]) -> str | tuple[int, ...]:
        """Tokens as one code point each (exact compare in rapidfuzz); int tuple if too many."""
        ids = [self.token_ids[t] for t in tokens]
        if len(self.token_ids) > rouge.MAX_CODE_IDS:
            return tuple(ids)
        return "".join(map(chr, ids))


def prepare(node: Node, order: Any, text: str, rarity: RarityOrder,
            bounds: PrefixBounds) -> Prepared | None:
    """Tokenize once; ``None`` for a text with no token (it scores 0 with everything)."""
    tokens = tokenize(text)
    if not tokens:
        return None
    rank = rarity.rank
    try:
        ranks = sorted(rank[e] for e in elements(tokens))
    except KeyError as exc:
        raise KeyError(f"element {exc} of {node!r} is missing from the rarity order; "
                       "build it from every text that is joined") from None
    prefix = tuple(ranks[: bounds.prefix_length(len(tokens))])
    return Prepared(node, order, rarity.code(tokens), prefix)


def bucket_of(node: Node, buckets: int) -> int:
    """Stable bucket of a node (``hash()`` of a str differs between worker processes)."""
    if buckets <= 1:
        return 0
    return zlib.crc32(f"{node[0]}\x1f{node[1]}".encode()) % buckets


def split_plan(key_counts: Iterable[tuple[int, int]], hot_size: int) -> dict[int, int]:
    """Buckets per hot element: ``ceil(postings / hot_size)`` where that exceeds 1."""
    if hot_size < 1:
        raise ValueError(f"hot_size must be >= 1, got {hot_size!r}")
    return {rank: math.ceil(n / hot_size) for rank, n in key_counts if n > hot_size}


def postings(prep: Prepared, splits: Mapping[int, int]) -> Iterator[tuple[GroupKey, Posting]]:
    """File ``prep`` under each prefix element; a hot element is sent to each bucket pair."""
    for pos, rank in enumerate(prep.prefix):
        before = prep.prefix[:pos]
        buckets = splits.get(rank, 1)
        b = bucket_of(prep.node, buckets)
        posting = Posting(prep.node, prep.order, prep.code, pos, before, b)
        for c in range(buckets):
            yield (rank, min(b, c), max(b, c)), posting


def verify_group(key: GroupKey, group: Iterable[Posting],
                 bounds: PrefixBounds) -> Iterator[ScoredPair]:
    """Exact scores for the pairs this group owns (see the module docstring).

    Members are sorted by length; for member ``x`` only partners at least as long and at most
    ``longest_partner(len x, len x - pos x)`` long can decide, a contiguous range. Each pair of
    the element is seen by exactly one group: the one of its two buckets.
    """
    _, b, c = key
    members = sorted(group, key=lambda p: (len(p.code), p.order))
    lengths = [len(p.code) for p in members]
    for i, x in enumerate(members):
        lx = lengths[i]
        budget = lx - x.position
        stop = bisect.bisect_right(lengths, bounds.longest_partner(lx, budget), lo=i + 1)
        if stop <= i + 1:
            continue
        before = frozenset(x.before)
        partners = [members[j] for j in range(i + 1, stop)
                    if _owns(x, members[j], b, c)
                    and bounds.need(lx, lengths[j]) <= lengths[j] - members[j].position
                    and before.isdisjoint(members[j].before)]
        yield from _score(x, partners)


def _owns(x: Posting, y: Posting, b: int, c: int) -> bool:
    """Whether this group must score (x, y): not both pool, distinct, the right bucket pair."""
    if x.node[0] == POOL and y.node[0] == POOL:
        return False
    if x.node == y.node:
        return False  # a duplicated id; the join back reports it
    return b == c or x.bucket != y.bucket


def _score(x: Posting, partners: list[Posting]) -> Iterator[ScoredPair]:
    """rapidfuzz LCS (batched when worth it) and rouge-score's float F for each pair."""
    if not partners:
        return
    lx = len(x.code)
    if len(partners) >= _BATCH_MIN:
        lcs = process.cdist([x.code], [y.code for y in partners], scorer=LCSseq.similarity)[0]
        lcs_values = [int(v) for v in lcs]
    else:
        lcs_values = [int(LCSseq.similarity(x.code, y.code)) for y in partners]
    for y, lcs in zip(partners, lcs_values, strict=True):
        score = rouge_l_from_counts(lcs, lx, len(y.code))
        if x.order < y.order:
            yield ScoredPair(y.node, y.order, x.node, x.order, score)
        else:
            yield ScoredPair(x.node, x.order, y.node, y.order, score)


def better(a: Best | ScoredPair | None, b: Best | ScoredPair) -> bool:
    """Whether ``b`` beats ``a``: higher score, then the earlier partner (rouge-score's argmax
    over the pool in pool order keeps the first maximum)."""
    if a is None:
        return True
    a_order = a.order if isinstance(a, Best) else a.earlier_order
    b_order = b.order if isinstance(b, Best) else b.earlier_order
    return b.score > a.score or (b.score == a.score and b_order < a_order)


def pick_best(candidates: Iterable[Best]) -> Best | None:
    """The best of ``candidates`` under ``better`` (associative: usable as a Beam combiner)."""
    best: Best | None = None
    for cand in candidates:
        if cand is not None and better(best, cand):
            best = cand
    return best


def greedy_scan(edges: Iterable[ScoredPair], threshold: float) -> dict[Node, ScoredPair]:
    """The sequential greedy rule over edges: rejected node -> its deciding edge.

    Visit the later ends of edges in order; a node is rejected iff one of its edges goes to an
    earlier node that was accepted (a node that never appears as a later end is accepted: pool
    texts, and records without any partner above the threshold). The deciding edge is the
    highest-scoring such edge, ties to the earliest partner. Duplicate edges are harmless.
    Pairs at or below ``threshold`` are ignored, so a caller may pass every scored pair.
    """
    by_later: dict[Node, list[ScoredPair]] = {}
    later_order: dict[Node, Any] = {}
    for edge in edges:
        if not edge.score > threshold:
            continue
        if not edge.earlier_order < edge.later_order:
            raise ValueError(f"edge {edge!r} does not point to an earlier node")
        if edge.later[0] == POOL:
            raise ValueError(f"pool node {edge.later!r} cannot be judged")
        by_later.setdefault(edge.later, []).append(edge)
        later_order[edge.later] = edge.later_order
    rejected: dict[Node, ScoredPair] = {}
    for node in sorted(by_later, key=later_order.__getitem__):
        deciding: ScoredPair | None = None
        for edge in by_later[node]:
            if edge.earlier not in rejected and better(deciding, edge):
                deciding = edge
        if deciding is not None:
            rejected[node] = deciding
    return rejected
