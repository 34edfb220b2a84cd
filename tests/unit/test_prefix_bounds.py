"""The novelty rule's length-only bounds live in one place (``filters.prefix_bounds``): the
in-memory index and the distributed join prune with the same object, so they prune the same
pairs; the bounds are safe for rouge-score's float and as tight as the 1e-9 margin allows."""

from __future__ import annotations

import pytest

from filters import novelty_join, rouge
from filters.novelty import NoveltyIndex
from filters.prefix_bounds import MARGIN, PrefixBounds

THRESHOLDS = (0.7, 0.5, 0.85, 0.0, 1.0, 0.3333333333333333, 0.6999999999)


@pytest.mark.parametrize("t", THRESHOLDS)
def test_index_and_join_prune_with_one_implementation(t):
    assert novelty_join.PrefixBounds is PrefixBounds  # the join prunes with the same class
    index = NoveltyIndex(threshold=t)
    limits = PrefixBounds(t)
    for length in range(1, 121):
        bounds = index._bounds(length)
        assert bounds.lo == limits.shortest_partner(length)
        assert bounds.short == limits.short_prefix(length)
        assert bounds.reach == tuple(limits.longest_partner(length, length - i)
                                     for i in range(limits.prefix_length(length)))


@pytest.mark.parametrize("t", THRESHOLDS)
def test_need_is_safe_and_tight(t):
    """Safe: every (lcs, la, lb) whose rouge-score float exceeds t reaches need. Tight: one less
    than need is below the threshold by more than the margin (only those pairs are pruned)."""
    limits = PrefixBounds(t)
    for la in range(1, 61):
        for lb in range(1, 61):
            need = limits.need(la, lb)
            assert need >= 1
            for lcs in range(min(la, lb) + 1):
                if rouge.rouge_l_from_counts(lcs, la, lb) > t:
                    assert lcs >= need, (t, lcs, la, lb)
            if need > 1:
                assert 2 * (need - 1) / (la + lb) < t - MARGIN


@pytest.mark.parametrize("t", THRESHOLDS)
def test_partner_lengths_and_prefixes_are_extreme(t):
    limits = PrefixBounds(t)
    for length in range(1, 81):
        lo = limits.shortest_partner(length)
        assert limits.need(length, lo) <= lo
        assert all(limits.need(length, x) > x for x in range(1, lo))
        assert limits.prefix_length(length) == length - limits.need(length, lo) + 1
        assert 1 <= limits.short_prefix(length) <= limits.prefix_length(length)
        for budget in range(limits.need(length, lo), length + 1):
            top = limits.longest_partner(length, budget)
            if top < 10**6:
                assert limits.need(length, top) <= budget < limits.need(length, top + 1)


def test_one_threshold_check_for_both():
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="threshold must be in"):
            PrefixBounds(bad)
        with pytest.raises(ValueError, match="threshold must be in"):
            NoveltyIndex(threshold=bad)
