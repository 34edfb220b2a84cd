"""Self-Instruct's ROUGE-L novelty rule, with rouge-score's exact decisions, at scale.

The rule (Self-Instruct, Alpaca, Ensemble-Instruct, Explore-Instruct): a candidate is rejected
iff ``max(rouge-score rougeL F, no stemmer, against every pool text) > threshold`` (0.7), and
accepted candidates join the pool at once (sequential greedy). Done literally that is
O(n^2) pure-Python LCS tables; here it is exact but fast:

* A pair can only be rejected if its LCS ``l`` reaches ``need(la, lb)``, the least integer with
  ``2*l/(la+lb) >= threshold - 1e-9``. rouge-score's float ``2PR/(P+R)`` differs from
  ``2l/(la+lb)`` by a few ulps, far inside the 1e-9 margin, so every pair whose bound comes
  within 1e-9 of the threshold is computed exactly; only pairs that can never decide are pruned.
* Length bound: ``l <= min(la, lb)``, so only lengths with ``need(la, lb) <= min(la, lb)``
  (about ``0.54 * la .. 1.86 * la`` at 0.7) are looked at.
* Overlap bound: ``l <= sum_w min(count_a(w), count_b(w))``, the multiset overlap. Writing the
  k-th occurrence of token w as element (w, k) makes it a set overlap, which lets us use prefix
  filtering from set-similarity joins: with elements sorted in one global rarity order, two
  texts with overlap >= alpha share an element among the first ``len - alpha + 1`` of each. We
  index only those prefix elements (rare ones, so a common word does not make a posting list
  that every probe scans) and probe with the candidate's prefix. The first shared element also
  bounds the overlap by its positions (PPJoin's positional filter): posting lists are sorted by
  length, and each probe position only slices out the lengths that can still decide.
* Length-split prefixes: against partners no longer than the probe, a partner's shorter prefix
  (``L - need(L, L) + 1``) suffices; against longer partners, the probe's. So each text is
  indexed in two maps (that short "head", and the "tail" up to its full prefix) and a probe scans
  the tail only with its own short prefix.
* Surviving pairs get their exact LCS from ``rapidfuzz`` (compiled, bit-parallel) and their
  F-measure from the same float expression rouge-score uses.

The length-only bounds (``need``, partner lengths, prefix lengths) are ``filters.prefix_bounds``,
shared with the distributed join (``filters.novelty_join``), so both prune the same pairs.

The rarity order only affects speed, never decisions: it is frozen between rebuilds (document
frequencies of the pool plus an optional ``order_hint``) and rebuilt when the pool doubles.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from operator import itemgetter

import numpy as np
from rapidfuzz import process
from rapidfuzz.distance import LCSseq

from filters import rouge
from filters.prefix_bounds import PrefixBounds
from filters.rouge import rouge_l_from_counts, tokenize

__all__ = ["NoveltyIndex", "NoveltyVerdict", "greedy_novelty"]

# Element (token id t, occurrence k >= 1) is encoded as (k - 1) << _OCC_SHIFT | t, so a
# first occurrence is the token id itself.
_OCC_SHIFT = 40
# Below this many surviving pairs a Python loop beats one vectorized batch.
_BATCH_MIN = 24
_MIN_REBUILD = 64


@dataclass(frozen=True, slots=True)
class NoveltyVerdict:
    """Outcome of the novelty rule for one text.

    ``score`` and ``most_similar`` (with its index in the pool's ``texts``) describe the most
    similar pool text found; see ``NoveltyIndex`` for exactly when ``score`` is the true maximum.
    Both are ``None``/``0.0`` when no examined pool text shares a token with the candidate.
    """

    accepted: bool
    score: float
    most_similar: str | None
    most_similar_index: int | None


@dataclass(frozen=True, slots=True)
class _Bounds:
    """Length-only facts for a text of some length L (every pair below is of that text).

    ``lo``: partners shorter than this can never decide. ``reach[i]``: the longest partner
    that can still decide when the first shared element sits at position ``i`` (at most
    ``L - i`` shared); ``len(reach)`` is the full prefix length ``L - need(L, lo) + 1``.
    ``short``: the prefix length ``L - need(L, L) + 1`` that suffices against partners that are
    at least ``L`` long.
    """

    lo: int
    reach: tuple[int, ...]
    short: int


@dataclass(slots=True)
class _Prepared:
    """A text tokenized once: token ids, their code string, and (cached) ordered elements."""

    text: str
    ids: tuple[int, ...]
    code: str | list[int]
    raw: list[int]  # elements, unordered
    elems: list[int] | None = None
    version: int = -1  # rarity-order version ``elems`` was sorted under


class NoveltyIndex:
    """A growing pool of texts answering "is this text novel?" exactly like rouge-score.

    ``check(text)`` rejects iff some pool text has rouge-score rougeL F-measure (no stemmer)
    ``> threshold`` with ``text``; texts with no ``[a-z0-9]`` token score 0 with everything and
    are never rejected. ``check`` never modifies the pool; ``add`` appends (novel or not).

    Score semantics of the returned ``NoveltyVerdict``:

    * rejected: ``score`` is the true maximum over the pool (always ``> threshold``) and
      ``most_similar`` the earliest pool text reaching it (every pair that could exceed the
      threshold is computed, so this costs nothing extra);
    * accepted, ``exact_scores=True``: ``score`` is the true maximum, same tie rule (one compiled
      LCS per pool text, so O(pool) per check);
    * accepted, ``exact_scores=False`` (default): ``score`` is the best score among the pairs
      that survived pruning and were computed exactly: a lower bound of the true maximum, and
      ``<= threshold``;
    * whenever that score is 0 (or the pool is empty): ``score=0.0``, ``most_similar=None``.

    ``order_hint``: texts expected later (e.g. the candidates of a greedy run); their token
    counts shape the rarity order of the index. It affects speed only, never a decision.
    ``prune=False`` computes every pair exactly (to measure what pruning saves).
    """

    def __init__(
        self,
        texts: Iterable[str] = (),
        *,
        threshold: float = 0.7,
        exact_scores: bool = False,
        prune: bool = True,
        order_hint: Iterable[str] = (),
    ) -> None:
        self._limits = PrefixBounds(threshold)  # validates the threshold
        self.threshold = threshold
        self.exact_scores = exact_scores
        self.prune = prune
        self._vocab: dict[str, int] = {}
        self._str_codes = True  # False once the vocabulary outgrows the code-point space
        self._texts: list[str] = []
        # Pool texts with at least one token ("slots"), in pool order, as parallel lists.
        self._slot_pos: list[int] = []
        self._slot_ids: list[tuple[int, ...]] = []
        self._slot_code: list[str | list[int]] = []
        self._slot_len: list[int] = []
        self._len_np = np.zeros(16, dtype=np.int64)
        # element -> (lengths, slots) sorted by length: the pool texts having the element in their
        # short prefix (_head) or in the rest of their full prefix (_tail).
        self._head: dict[int, tuple[list[int], list[int]]] = {}
        self._tail: dict[int, tuple[list[int], list[int]]] = {}
        self._bounds_cache: dict[int, _Bounds] = {}
        self._rank: dict[int, int] = {}  # element -> position in the frozen rarity order
        self._late = 0  # elements unseen at the last rebuild get ranks -1, -2, ... (rarest)
        self._version = 0
        self._hint_df: dict[int, int] = {}
        self._hint_docs = 0
        self._count_hint(_elements(self._token_ids(text)) for text in order_hint)
        self._next_rebuild = 0
        for text in texts:
            self._append(self._prepare(text), index=False)
        self._rebuild()

    # -- public API ---------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._texts)

    @property
    def texts(self) -> tuple[str, ...]:
        """The pool in insertion order (``most_similar_index`` indexes it); a copy."""
        return tuple(self._texts)

    def add(self, text: str) -> None:
        """Append ``text`` to the pool (whether or not it is novel)."""
        self._append(self._prepare(text), index=True)

    def check(self, text: str) -> NoveltyVerdict:
        """Decide ``text`` against the current pool without adding it."""
        return self._check_prepared(self._prepare(text))

    # -- preparation --------------------------------------------------------------------------

    def _token_ids(self, text: str) -> tuple[int, ...]:
        tokens = tokenize(text)
        vocab = self._vocab
        ids = tuple(map(vocab.get, tokens))
        if None in ids:
            ids = tuple([vocab.setdefault(t, len(vocab)) for t in tokens])
        return ids

    def _prepare(self, text: str) -> _Prepared:
        ids = self._token_ids(text)
        if self._str_codes and len(self._vocab) > rouge.MAX_CODE_IDS:
            # Vocabulary beyond the code-point space: compare int lists instead (still exact,
            # rapidfuzz hashes an int to itself).
            self._str_codes = False
            self._slot_code = [list(slot_ids) for slot_ids in self._slot_ids]
        code: str | list[int] = "".join(map(chr, ids)) if self._str_codes else list(ids)
        return _Prepared(text, ids, code, _elements(ids))

    def _code(self, prep: _Prepared) -> str | list[int]:
        """``prep``'s code in the index's current representation (str, or int list)."""
        if not self._str_codes and isinstance(prep.code, str):
            prep.code = list(prep.ids)  # prepared before the switch to int lists
        return prep.code

    def _bounds(self, length: int) -> _Bounds:
        """Length-only bounds for a text of ``length`` tokens, cached (see ``_Bounds``)."""
        cached = self._bounds_cache.get(length)
        if cached is not None:
            return cached
        limits = self._limits
        reach = tuple(limits.longest_partner(length, length - i)
                      for i in range(limits.prefix_length(length)))
        bounds = _Bounds(limits.shortest_partner(length), reach, limits.short_prefix(length))
        self._bounds_cache[length] = bounds
        return bounds

    def _count_hint(self, element_lists: Iterable[list[int]]) -> None:
        """Count texts expected later into the document frequencies of the next rebuild."""
        hint_df = self._hint_df
        for elems in element_lists:
            if elems:
                self._hint_docs += 1
                for e in elems:
                    hint_df[e] = hint_df.get(e, 0) + 1

    def _sorted_elements(self, elems: list[int]) -> list[int]:
        """``elems`` (a fresh list, sorted in place) in the frozen rarity order, rarest first."""
        rank = self._rank
        try:
            elems.sort(key=rank.__getitem__)
        except KeyError:
            for e in elems:
                if e not in rank:
                    self._late -= 1
                    rank[e] = self._late
            elems.sort(key=rank.__getitem__)
        return elems

    def _elements_of(self, prep: _Prepared) -> list[int]:
        if prep.elems is None or prep.version != self._version:
            prep.elems = self._sorted_elements(list(prep.raw))
            prep.version = self._version
        return prep.elems

    # -- pool maintenance ---------------------------------------------------------------------

    def _append(self, prep: _Prepared, *, index: bool) -> None:
        pos = len(self._texts)
        self._texts.append(prep.text)
        if not prep.ids:
            return  # scores 0 with everything: never a neighbour
        slot = len(self._slot_ids)
        self._slot_pos.append(pos)
        self._slot_ids.append(prep.ids)
        self._slot_code.append(self._code(prep))
        self._slot_len.append(len(prep.ids))
        if slot >= len(self._len_np):
            self._len_np = np.concatenate([self._len_np, np.zeros_like(self._len_np)])
        self._len_np[slot] = len(prep.ids)
        if not index or not self.prune:
            return
        if len(self._slot_ids) >= self._next_rebuild:
            self._rebuild()
            return
        length = len(prep.ids)
        bounds = self._bounds(length)
        elems = self._elements_of(prep)
        for j in range(len(bounds.reach)):
            postings = self._head if j < bounds.short else self._tail
            plist = postings.get(elems[j])
            if plist is None:
                postings[elems[j]] = ([length], [slot])
            else:
                at = bisect.bisect_right(plist[0], length)
                plist[0].insert(at, length)
                plist[1].insert(at, slot)

    def _rebuild(self) -> None:
        """Refreeze the rarity order from current counts and re-index every pool text."""
        self._version += 1
        self._next_rebuild = max(_MIN_REBUILD, 2 * (len(self._slot_ids) + self._hint_docs))
        if not self.prune:
            return
        df = dict(self._hint_df)
        for ids in self._slot_ids:
            for e in _elements(ids):
                df[e] = df.get(e, 0) + 1
        order = sorted(df, key=lambda e: (df[e], e))
        self._rank = {e: r for r, e in enumerate(order)}
        self._late = 0
        head: dict[int, list[tuple[int, int]]] = {}
        tail: dict[int, list[tuple[int, int]]] = {}
        for slot, ids in enumerate(self._slot_ids):
            length = len(ids)
            bounds = self._bounds(length)
            elems = self._sorted_elements(_elements(ids))
            for e in elems[: bounds.short]:
                head.setdefault(e, []).append((length, slot))
            for e in elems[bounds.short : len(bounds.reach)]:
                tail.setdefault(e, []).append((length, slot))
        self._head = _sorted_postings(head)
        self._tail = _sorted_postings(tail)

    # -- decisions ----------------------------------------------------------------------------

    def _check_prepared(self, prep: _Prepared) -> NoveltyVerdict:
        if not prep.ids or not self._slot_ids:
            return NoveltyVerdict(True, 0.0, None, None)
        if self.prune:
            best, slot = self._best_of(prep, self._candidates(prep))
        else:
            best, slot = self._exact_best(prep)
        accepted = not best > self.threshold
        if accepted and self.exact_scores and self.prune:
            best, slot = self._exact_best(prep)
        if slot is None or best <= 0.0:
            return NoveltyVerdict(accepted, 0.0, None, None)
        pos = self._slot_pos[slot]
        return NoveltyVerdict(accepted, best, self._texts[pos], pos)

    def _candidates(self, prep: _Prepared) -> list[int]:
        """Pool slots, ascending, that pass the length, prefix and positional bounds.

        A pair that can decide shares an element within both prefixes (prefix filtering). At
        the first shared element, at probe position ``i``, at most ``la - i`` elements are shared,
        so only partners up to ``reach[i]`` long can still decide (PPJoin's positional filter).
        Partners no longer than the probe need only their short prefix searched, partners longer
        than it only the probe's short prefix. Slices and unions run in C.
        """
        la = len(prep.ids)
        bounds = self._bounds(la)
        lo, short = bounds.lo, bounds.short
        head, tail = self._head, self._tail
        elems = self._elements_of(prep)
        bisect_left = bisect.bisect_left
        found: set[int] = set()
        for i, top in enumerate(bounds.reach):
            e = elems[i]
            if i >= short:
                top = min(top, la)  # past the probe's short prefix: shorter partners only
            plist = head.get(e)
            if plist is not None:
                start = bisect_left(plist[0], lo)
                stop = bisect_left(plist[0], top + 1, start)
                if start < stop:
                    found.update(plist[1][start:stop])
            if i < short:
                plist = tail.get(e)
                if plist is not None:
                    start = bisect_left(plist[0], la + 1)
                    stop = bisect_left(plist[0], top + 1, start)
                    if start < stop:
                        found.update(plist[1][start:stop])
        return sorted(found)

    def _best_of(self, prep: _Prepared, slots: list[int]) -> tuple[float, int | None]:
        """Exact maximum score over ascending ``slots`` (ties: earliest slot)."""
        if not slots:
            return 0.0, None
        la = len(prep.ids)
        code = self._code(prep)
        codes = self._slot_code
        if len(slots) >= _BATCH_MIN:
            lcs = process.cdist(
                [code], itemgetter(*slots)(codes), scorer=LCSseq.similarity, dtype=np.int64
            )[0]
            f = _fmeasures(lcs, la, self._len_np[slots])
            at = int(np.argmax(f))
            return float(f[at]), slots[at]
        lens = self._slot_len
        similarity = LCSseq.similarity
        best, best_slot = 0.0, None
        for slot in slots:
            f1 = rouge_l_from_counts(similarity(code, codes[slot]), la, lens[slot])
            if f1 > best:
                best, best_slot = f1, slot
        return best, best_slot

    def _exact_best(self, prep: _Prepared) -> tuple[float, int | None]:
        """Exact maximum over the whole pool: one compiled LCS per pool text, vectorized F."""
        la = len(prep.ids)
        n = len(self._slot_code)
        lcs = process.cdist(
            [self._code(prep)], self._slot_code, scorer=LCSseq.similarity, dtype=np.int64
        )[0]
        f = _fmeasures(lcs, la, self._len_np[:n])
        slot = int(np.argmax(f))
        return float(f[slot]), slot


def _fmeasures(lcs: np.ndarray, la: int, lb: np.ndarray) -> np.ndarray:
    """rouge-score's F-measure elementwise: the same IEEE operations in the same order."""
    precision = lcs / lb
    recall = lcs / la
    denom = precision + recall
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, 2 * precision * recall / denom, 0.0)


def _sorted_postings(
    entries: dict[int, list[tuple[int, int]]],
) -> dict[int, tuple[list[int], list[int]]]:
    out = {}
    for e, pairs in entries.items():
        pairs.sort()
        out[e] = ([length for length, _ in pairs], [slot for _, slot in pairs])
    return out


def _elements(ids: tuple[int, ...]) -> list[int]:
    """The token multiset as a set: the k-th occurrence of token t becomes ``(k-1) << 40 | t``."""
    if len(set(ids)) == len(ids):
        return list(ids)
    counts: dict[int, int] = {}
    out = []
    for t in ids:
        k = counts.get(t, 0)
        counts[t] = k + 1
        out.append((k << _OCC_SHIFT) | t)
    return out


def greedy_novelty(
    candidates: Sequence[str],
    pool: Iterable[str],
    *,
    threshold: float = 0.7,
    exact_scores: bool = False,
) -> list[NoveltyVerdict]:
    """Self-Instruct's sequential greedy filter: decide ``candidates`` in order against ``pool``.

    Each accepted candidate joins the pool before the next one is decided, as in the paper's
    bootstrap loop. Returns one verdict per candidate (score semantics: ``NoveltyIndex``).
    """
    index = NoveltyIndex(pool, threshold=threshold, exact_scores=exact_scores)
    prepared = [index._prepare(text) for text in candidates]  # tokenize each text once
    index._count_hint(prep.raw for prep in prepared)
    index._rebuild()
    verdicts = []
    for prep in prepared:
        verdict = index._check_prepared(prep)
        if verdict.accepted:
            index._append(prep, index=True)
        verdicts.append(verdict)
    return verdicts
