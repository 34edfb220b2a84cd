"""Cf-D (#InsTag Algorithm 1): hand-built cases, ties, tag-less queries, the literal reference."""

from __future__ import annotations

import random

import pytest

from bench.cfd_reference import cfd_literal
from filters.cfd import complexity_first_diverse, subset_stats


def picks(tag_sets, n):
    return [(p.index, p.pass_no) for p in complexity_first_diverse(tag_sets, n)]


def test_first_pass_covers_every_tag_complexity_first():
    tag_sets = [{"a"}, {"a", "b", "c"}, {"b", "d"}, {"c"}, {"e"}]
    # Sorted: 1 (3 tags), 2 (2), 0, 3, 4 (1 each, input order). Pass 1 takes 1 (a b c),
    # 2 (adds d), skips 0 and 3, takes 4 (e). Pass 2 restarts from T_B = {}: 0, then 3 is new
    # again (c not seen in pass 2).
    assert picks(tag_sets, 10) == [(1, 1), (2, 1), (4, 1), (0, 2), (3, 2)]
    first_pass = [i for i, p in picks(tag_sets, 10) if p == 1]
    assert set().union(*(tag_sets[i] for i in first_pass)) == {"a", "b", "c", "d", "e"}


def test_budget_stops_in_the_middle_of_a_pass():
    tag_sets = [{"a"}, {"a", "b", "c"}, {"b", "d"}, {"c"}, {"e"}]
    assert picks(tag_sets, 2) == [(1, 1), (2, 1)]
    assert picks(tag_sets, 4) == [(1, 1), (2, 1), (4, 1), (0, 2)]
    assert picks(tag_sets, 0) == []


def test_ties_keep_the_input_order():
    tag_sets = [{"x", "y"}, {"x", "z"}, {"y", "z"}, {"w", "v"}]
    # All have two tags: input order. 0 takes x y; 1 adds z; 2 adds nothing; 3 adds w v.
    assert picks(tag_sets, 4) == [(0, 1), (1, 1), (3, 1), (2, 2)]
    reordered = [tag_sets[i] for i in (2, 1, 0, 3)]
    assert picks(reordered, 4) == [(0, 1), (1, 1), (3, 1), (2, 2)]  # now 2 leads


def test_duplicates_are_taken_one_per_pass():
    tag_sets = [{"a", "b"}] * 3 + [{"c"}]
    assert picks(tag_sets, 10) == [(0, 1), (3, 1), (1, 2), (2, 3)]


def test_tag_less_queries_are_never_taken_and_the_loop_ends():
    tag_sets = [set(), {"a"}, set(), {"a"}, set()]
    assert picks(tag_sets, 5) == [(1, 1), (3, 2)]  # fewer than N: only tag-less ones remain
    assert picks([set(), set()], 3) == []
    assert picks([], 3) == []


def test_repeated_tags_in_one_query_count_once():
    assert picks([("a", "a", "a"), ("b", "c")], 1) == [(1, 1)]


def test_rank_is_the_selection_order():
    result = complexity_first_diverse([{"a"}, {"a", "b"}, {"c"}], 3)
    assert [p.rank for p in result] == [0, 1, 2]
    assert [p.index for p in result] == [1, 2, 0]


@pytest.mark.parametrize("seed", range(40))
def test_identical_to_the_literal_algorithm(seed):
    rng = random.Random(seed)
    vocab = rng.randint(1, 15)
    tag_sets = [rng.sample(range(vocab), rng.randint(0, min(vocab, 6)))
                for _ in range(rng.randint(0, 120))]
    for n in (1, len(tag_sets) // 3, len(tag_sets), len(tag_sets) + 5):
        assert picks(tag_sets, n) == cfd_literal(tag_sets, n)


def test_subset_stats_coverage_and_complexity():
    stats = subset_stats([{"a", "b"}, {"b", "c"}, set()], pool_tags=4)
    assert (stats.size, stats.distinct_tags) == (3, 3)
    assert stats.mean_tags == pytest.approx(4 / 3)
    assert stats.coverage == pytest.approx(0.75)
