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
  bounds the overlap by its positions (PPJoin's positional filter).
* Surviving pairs get their exact LCS from ``rapidfuzz`` (compiled, bit-parallel) and their
  F-measure from the same float expression rouge-score uses.

The rarity order only affects speed, never decisions: it is frozen between rebuilds (document
frequencies of the pool plus an optional ``order_hint``) and rebuilt when the pool doubles.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from rapidfuzz import process
from rapidfuzz.distance import LCSseq

from filters import rouge
from filters.rouge import rouge_l_from_counts, tokenize

__all__ = ["NoveltyIndex", "NoveltyVerdict", "greedy_novelty"]

# Bounds are compared against threshold - _MARGIN so that float rounding in rouge-score's
# 2PR/(P+R) (a few 1e-16) can never turn a pruned pair into a rejecting one.
_MARGIN = 1e-9
# Element (token id t, occurrence k) is encoded as k << _OCC_SHIFT | t; the sort key puts the
# frozen document frequency above it.
_OCC_SHIFT = 40
_DF_SHIFT = 96
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


@dataclass(slots=True)
class _Prepared:
    """A text tokenized once: token ids and their one-character-per-token code string."""

    text: str
    ids: tuple[int, ...]
    code: str | list[int]


class NoveltyIndex:
    """A growing pool of texts answering "is this text novel?" exactly like rouge-score.

    ``check(text)`` rejects iff some pool text has rouge-score rougeL F-measure (no stemmer)
    ``> threshold`` with ``text``; texts with no ``[a-z0-9]`` token score 0 with everything and are
    never rejected (for a threshold >= 0). ``check`` never modifies the pool; ``add`` appends.

    Score semantics of the returned ``NoveltyVerdict``:

    * rejected: ``score`` is the true maximum over the pool (always ``> threshold``) and
      ``most_similar`` the earliest pool text reaching it;
    * accepted, ``exact_scores=True``: ``score`` is the true maximum (one compiled LCS per pool
      text, so O(pool) per check);
    * accepted, ``exact_scores=False`` (default): ``score`` is the best score among the pairs
      that survived pruning and were computed exactly, a lower bound of the true maximum (and
      ``<= threshold``); 0.0 with ``most_similar=None`` when no pair needed computing.

    ``order_hint``: texts expected later (e.g. the candidates of a greedy run); their token
    counts shape the rarity order used by the index. Affects speed only.
    ``prune=False`` computes every pair (used to measure what pruning saves).
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
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {threshold!r}")
        self.threshold = threshold
        self.exact_scores = exact_scores
        self.prune = prune
        self._half = (threshold - _MARGIN) / 2  # need(la, lb) = max(1, ceil(half * (la + lb)))
        self._vocab: dict[str, int] = {}
        self._str_codes = True  # False once the vocabulary outgrows the code-point space
        self._texts: list[str] = []
        # Pool texts with at least one token ("slots"), in pool order.
        self._slot_pos: list[int] = []
        self._slot_ids: list[tuple[int, ...]] = []
        self._slot_code: list[str | list[int]] = []
        self._slot_len: list[int] = []
        self._len_np = np.zeros(16, dtype=np.int64)
        self._postings: dict[int, list[tuple[int, int, int]]] = {}
        self._bounds_cache: dict[int, tuple[int, int, int]] = {}
        self._hint_df: dict[int, int] = {}
        self._hint_docs = 0
        for text in order_hint:
            ids = self._token_ids(text)
            if ids:
                self._hint_docs += 1
                for e in _elements(ids):
                    self._hint_df[e] = self._hint_df.get(e, 0) + 1
        self._df: dict[int, int] = {}
        self._next_rebuild = 0
        for text in texts:
            self._append(self._prepare(text), index=False)
        self._rebuild()

    # -- public API ---------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._texts)

    @property
    def texts(self) -> tuple[str, ...]:
        """The pool, in insertion order (``most_similar_index`` indexes this)."""
        return tuple(self._texts)

    def add(self, text: str) -> None:
        """Append ``text`` to the pool (whether or not it is novel)."""
        self._append(self._prepare(text), index=True)

    def check(self, text: str) -> NoveltyVerdict:
        """Decide ``text`` against the current pool without adding it."""
        return self._check_prepared(self._prepare(text))

    # -- preparation --------------------------------------------------------------------------

    def _token_ids(self, text: str) -> tuple[int, ...]:
        vocab = self._vocab
        return tuple([vocab.setdefault(t, len(vocab)) for t in tokenize(text)])

    def _prepare(self, text: str) -> _Prepared:
        ids = self._token_ids(text)
        return _Prepared(text, ids, self._encode(ids))

    def _encode(self, ids: tuple[int, ...]) -> str | list[int]:
        if self._str_codes and len(self._vocab) > rouge.MAX_CODE_IDS:
            # Astronomically large vocabulary: switch every code to int lists (hash(i) == i,
            # so rapidfuzz still compares exactly).
            self._str_codes = False
            self._slot_code = [list(ids_) for ids_ in self._slot_ids]
        if self._str_codes:
            return "".join([rouge.code_point(i) for i in ids])
        return list(ids)

    def _bounds(self, length: int) -> tuple[int, int, int]:
        """(min partner length, max partner length, least possible need) for ``length``."""
        cached = self._bounds_cache.get(length)
        if cached is not None:
            return cached
        need = self._need
        lo = 1
        while need(length, lo) > lo:
            lo += 1
        if self._half <= 0:
            hi = sys.maxsize
        else:
            hi = max(length, math.floor(length / self._half) - length + 2)
            while need(length, hi) > length:
                hi -= 1
        bounds = (lo, hi, need(length, lo))
        self._bounds_cache[length] = bounds
        return bounds

    def _need(self, la: int, lb: int) -> int:
        """Least LCS with which a pair of these lengths could score ``> threshold``."""
        return max(1, math.ceil(self._half * (la + lb)))

    # -- pool maintenance ---------------------------------------------------------------------

    def _append(self, prep: _Prepared, *, index: bool) -> None:
        pos = len(self._texts)
        self._texts.append(prep.text)
        if not prep.ids:
            return  # scores 0 with everything: never a neighbour
        slot = len(self._slot_ids)
        self._slot_pos.append(pos)
        self._slot_ids.append(prep.ids)
        self._slot_code.append(prep.code if self._str_codes else list(prep.ids))
        self._slot_len.append(len(prep.ids))
        if slot >= len(self._len_np):
            self._len_np = np.concatenate([self._len_np, np.zeros_like(self._len_np)])
        self._len_np[slot] = len(prep.ids)
        if index:
            if len(self._slot_ids) >= self._next_rebuild:
                self._rebuild()
            else:
                self._index_slot(slot)

    def _rebuild(self) -> None:
        """Refreeze the rarity order from current counts and re-index every pool text."""
        df = dict(self._hint_df)
        for ids in self._slot_ids:
            for e in _elements(ids):
                df[e] = df.get(e, 0) + 1
        self._df = df
        self._postings = {}
        for slot in range(len(self._slot_ids)):
            self._index_slot(slot)
        self._next_rebuild = max(_MIN_REBUILD, 2 * (len(self._slot_ids) + self._hint_docs))

    def _sorted_elements(self, ids: tuple[int, ...]) -> list[int]:
        df = self._df
        elems = _elements(ids)
        elems.sort(key=lambda e: (df.get(e, 0) << _DF_SHIFT) | e)
        return elems

    def _index_slot(self, slot: int) -> None:
        ids = self._slot_ids[slot]
        length = len(ids)
        alpha = self._bounds(length)[2]
        postings = self._postings
        for j, e in enumerate(self._sorted_elements(ids)[: length - alpha + 1]):
            plist = postings.get(e)
            if plist is None:
                postings[e] = [(slot, j, length)]
            else:
                plist.append((slot, j, length))

    # -- decisions ----------------------------------------------------------------------------

    def _check_prepared(self, prep: _Prepared) -> NoveltyVerdict:
        la = len(prep.ids)
        if la == 0 or not self._slot_ids:
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
        """Pool slots that pass the length, prefix and positional bounds (may still be far)."""
        la = len(prep.ids)
        lo, hi, alpha = self._bounds(la)
        half = self._half
        ceil = math.ceil
        postings = self._postings
        elems = self._sorted_elements(prep.ids)
        seen: set[int] = set()
        out: list[int] = []
        for i in range(la - alpha + 1):
            plist = postings.get(elems[i])
            if plist is None:
                continue
            rest_a = la - i
            for slot, j, lb in plist:
                if slot in seen:
                    continue
                seen.add(slot)  # first shared element: the positional bound below is valid
                if lb < lo or lb > hi:
                    continue
                ub = lb - j if lb - j < rest_a else rest_a
                if ub < ceil(half * (la + lb)):
                    continue
                out.append(slot)
        return out

    def _best_of(self, prep: _Prepared, slots: Sequence[int]) -> tuple[float, int | None]:
        """Exact maximum score over ``slots`` (ties: earliest slot)."""
        la = len(prep.ids)
        code = prep.code
        codes = self._slot_code
        lens = self._slot_len
        similarity = LCSseq.similarity
        best, best_slot = -1.0, None
        for slot in slots:
            f = rouge_l_from_counts(similarity(code, codes[slot]), la, lens[slot])
            if f > best or (f == best and best_slot is not None and slot < best_slot):
                best, best_slot = f, slot
        return (best, best_slot) if best_slot is not None else (0.0, None)

    def _exact_best(self, prep: _Prepared) -> tuple[float, int | None]:
        """Exact maximum over the whole pool: one compiled LCS per pool text, vectorized F."""
        la = len(prep.ids)
        n = len(self._slot_code)
        lcs = process.cdist([prep.code], self._slot_code, scorer=LCSseq.similarity,
                            dtype=np.int64)[0]
        lb = self._len_np[:n]
        # The same float operations, in the same order, as rouge_score (IEEE, elementwise).
        precision = lcs / lb
        recall = lcs / la
        denom = precision + recall
        with np.errstate(invalid="ignore", divide="ignore"):
            f = np.where(denom > 0, 2 * precision * recall / denom, 0.0)
        slot = int(np.argmax(f))
        return float(f[slot]), slot


def _elements(ids: tuple[int, ...]) -> list[int]:
    """The multiset of token ids as a set: the k-th occurrence of t becomes ``k << 40 | t``."""
    seen: dict[int, int] = {}
    out = []
    for t in ids:
        k = seen.get(t, 0) + 1
        seen[t] = k
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

    Each accepted candidate joins the pool before the next one is decided, exactly as the
    paper's bootstrap loop does. Returns one verdict per candidate (see ``NoveltyIndex``).
    """
    index = NoveltyIndex(pool, threshold=threshold, exact_scores=exact_scores,
                         order_hint=candidates)
    verdicts = []
    for text in candidates:
        prep = index._prepare(text)
        verdict = index._check_prepared(prep)
        if verdict.accepted:
            index._append(prep, index=True)
        verdicts.append(verdict)
    return verdicts
