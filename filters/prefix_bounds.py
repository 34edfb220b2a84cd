"""Length-only bounds of the ROUGE-L novelty rule: which pairs could still score ``> threshold``.

Shared by the in-memory index (``filters.novelty``) and the distributed join
(``filters.novelty_join``), so both prune exactly the same pairs and so take the same decisions.

rouge-score's F-measure is ``2PR/(P+R)``, which equals ``2*lcs/(la+lb)`` up to a few ulps. A pair
can therefore only score ``> threshold`` when its LCS reaches ``need(la, lb)``, the least integer
with ``2*lcs/(la+lb) >= threshold - MARGIN``. The margin (1e-9, far above those ulps) keeps every
pair that could exceed the threshold in floating point; the decision itself is always made on
rouge-score's own float, never on these bounds.
"""

from __future__ import annotations

import math
import sys

__all__ = ["MARGIN", "PrefixBounds"]

# Bounds are compared against threshold - MARGIN so that float rounding in rouge-score's
# 2PR/(P+R) (a few 1e-16) can never turn a pruned pair into a rejecting one.
MARGIN = 1e-9


class PrefixBounds:
    """Length-only facts for threshold ``t``, cached per length (they depend on nothing else).

    Elements are a text's tokens with the k-th occurrence of a token made distinct, so the
    multiset overlap (an upper bound of the LCS) is a set overlap and prefix filtering applies:
    with elements sorted in one global order, two texts sharing ``need`` elements share one
    among the first ``len - need + 1`` of each.
    """

    def __init__(self, threshold: float) -> None:
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {threshold!r}")
        self.threshold = threshold
        self._half = (threshold - MARGIN) / 2
        self._prefix: dict[int, int] = {}
        self._reach: dict[tuple[int, int], int] = {}

    def need(self, la: int, lb: int) -> int:
        """Least LCS with which lengths (la, lb) could score ``> threshold``.

        ``F <= 2*lcs/(la+lb)`` (up to ulps, covered by the margin), so ``lcs`` must reach
        ``(threshold - 1e-9) * (la + lb) / 2``; and ``F > 0`` needs ``lcs >= 1``.
        """
        return max(1, math.ceil(self._half * (la + lb)))

    def shortest_partner(self, length: int) -> int:
        """Shortest partner length that can decide against a text of ``length`` tokens.

        A partner of length ``x`` shares at most ``x`` elements, so it needs ``need <= x``.
        """
        lo = 1
        while self.need(length, lo) > lo:
            lo += 1
        return lo

    def prefix_length(self, length: int) -> int:
        """How many rarest elements a text must file so every deciding pair meets once."""
        cached = self._prefix.get(length)
        if cached is None:
            cached = length - self.need(length, self.shortest_partner(length)) + 1
            self._prefix[length] = cached
        return cached

    def short_prefix(self, length: int) -> int:
        """The prefix that suffices against partners at least ``length`` long (``need`` grows
        with the partner's length, so the shortest such partner needs the fewest shared)."""
        return length - self.need(length, length) + 1

    def longest_partner(self, length: int, budget: int) -> int:
        """Longest partner ``x`` with ``need(length, x) <= budget`` (need grows with ``x``).

        With ``budget`` the elements still shareable from some prefix position on, this is
        PPJoin's positional filter as a length limit.
        """
        key = (length, budget)
        cached = self._reach.get(key)
        if cached is not None:
            return cached
        limit = budget / self._half if self._half > 0 else math.inf
        if limit > 1e15:
            x = sys.maxsize
        else:
            x = max(0, math.floor(limit) - length + 2)
            while x > 0 and self.need(length, x) > budget:
                x -= 1
        self._reach[key] = x
        return x
