"""The join form of the novelty rule (prefix postings, group verification, greedy scan over
edges) finds every pair that can decide, scores each once with rouge-score's float, and decides
exactly like ``filters.novelty.greedy_novelty``. The shuffle is simulated with a dict."""

from __future__ import annotations

import random
from collections import Counter, defaultdict

import pytest
from conftest import golden_seed_instructions
from rouge_score import rouge_scorer

from filters import rouge
from filters.novelty import NoveltyIndex, greedy_novelty
from filters.novelty_join import (
    POOL,
    RECORD,
    Best,
    RarityOrder,
    ScoredPair,
    elements,
    greedy_scan,
    pick_best,
    postings,
    prepare,
    split_plan,
    verify_group,
)
from filters.prefix_bounds import PrefixBounds

WORDS = "write a poem story about the sea sky city dog cat in short long".split()
ODD = ["", "写一首诗", "写一首歌", "!!! ...", "🙂", "写一首诗 poem", "   ", "İ K"]

Item = tuple[tuple[int, str], object, str]


def _salad(rng: random.Random, n: int, vocab=WORDS, lengths=(3, 14)) -> list[str]:
    """Word salad over a tiny vocabulary: many pairs land near (and exactly on) 0.7."""
    return [" ".join(rng.choice(vocab) for _ in range(rng.randint(*lengths))) for _ in range(n)]


def _boundary_variants(rng: random.Random, n: int) -> list[str]:
    """A 7-word core plus extras: (lcs, la, lb) like (7, 7, 13) -> 0.7000000000000001."""
    core = "write a short poem about the ocean"
    extras = [f"x{i}" for i in range(40)]
    return [core + " " + " ".join(rng.sample(extras, rng.randint(0, 6))) for _ in range(n)]


def _items(candidates: list[str], pool: list[str]) -> list[Item]:
    items: list[Item] = [((POOL, str(i)), (POOL, i), t) for i, t in enumerate(pool)]
    items += [((RECORD, f"r{i:05d}"), (RECORD, i, f"r{i:05d}"), t)
              for i, t in enumerate(candidates)]
    return items


def _scored_pairs(items: list[Item], threshold: float, hot_size: int | None) -> list[ScoredPair]:
    """Rarity order, postings, a dict as GroupByKey, group verification."""
    rarity = RarityOrder.from_texts(text for _, _, text in items)
    bounds = PrefixBounds(threshold)
    prepared = [p for p in (prepare(n, o, t, rarity, bounds) for n, o, t in items) if p]
    sizes = Counter(rank for p in prepared for rank in p.prefix)
    splits = split_plan(sizes.items(), hot_size) if hot_size else {}
    groups = defaultdict(list)
    for prep in prepared:
        for key, posting in postings(prep, splits):
            groups[key].append(posting)
    return [pair for key in sorted(groups) for pair in verify_group(key, groups[key], bounds)]


def _join_greedy(candidates: list[str], pool: list[str], threshold: float,
                 hot_size: int | None = None) -> list[tuple[bool, float | None, str | None]]:
    """(accepted, rouge_l_max, most_similar) per candidate, as the Beam transform computes them."""
    items = _items(candidates, pool)
    pairs = _scored_pairs(items, threshold, hot_size)
    rejected = greedy_scan(pairs, threshold)
    text_of = {node: text for node, _, text in items}
    offers = defaultdict(list)
    for pair in pairs:
        if pair.earlier not in rejected:
            offers[pair.later].append(
                Best(pair.score, pair.earlier_order, pair.earlier, text_of[pair.earlier]))
    out = []
    for node, _, _ in items[len(pool):]:
        best = pick_best(offers[node])
        if node in rejected:
            assert best is not None and best.score == rejected[node].score > threshold
        out.append((node not in rejected, best.score if best else None,
                    best.text if best else None))
    return out


def _assert_matches_greedy(candidates: list[str], pool: list[str], threshold: float,
                           hot_size: int | None = None) -> int:
    ours = _join_greedy(candidates, pool, threshold, hot_size)
    ref = greedy_novelty(candidates, pool, threshold=threshold, exact_scores=True)
    assert [o[0] for o in ours] == [v.accepted for v in ref]
    for text, (accepted, score, similar), want in zip(candidates, ours, ref, strict=True):
        if not accepted:  # exact: the true max and the earliest text reaching it
            assert (score, similar) == (want.score, want.most_similar)
        elif score is not None:  # a lower bound, achieved by the text it names
            assert 0 < score <= want.score and score <= threshold
            assert rouge.rouge_l(text, similar) == score
        else:
            assert similar is None
    return sum(not v.accepted for v in ref)


def _seed_instructions() -> list[str]:
    return golden_seed_instructions()


def _perturb(rng: random.Random, text: str) -> str:
    words = text.split()
    i = rng.randrange(len(words))
    op = rng.randrange(4)
    if op == 0 and len(words) > 1:
        del words[i]
    elif op == 1:
        words.insert(i, rng.choice(WORDS))
    elif op == 2:
        words[i] = rng.choice(WORDS)
    else:
        j = rng.randrange(len(words))
        words[i], words[j] = words[j], words[i]
    return " ".join(words)


# -- pieces -----------------------------------------------------------------------------------

def test_elements_turn_a_multiset_into_a_set():
    assert elements(["a", "b", "a", "a"]) == ["a", "b", "a#2", "a#3"]
    assert elements([]) == []


def test_need_is_a_safe_lower_bound_for_rouge_score_floats():
    """Every (lcs, la, lb) whose float F exceeds t has lcs >= need(la, lb); prefixes match the
    single-process index."""
    for t in (0.7, 0.5, 0.85, 0.0, 1.0, 0.3333333333333333):
        bounds = PrefixBounds(t)
        index = NoveltyIndex(threshold=t)
        for la in range(1, 41):
            assert bounds.prefix_length(la) == len(index._bounds(la).reach)
            for lb in range(1, 41):
                need = bounds.need(la, lb)
                for lcs in range(0, min(la, lb) + 1):
                    if rouge.rouge_l_from_counts(lcs, la, lb) > t:
                        assert lcs >= need, (t, lcs, la, lb)
                for budget in range(1, la + 1):
                    top = bounds.longest_partner(la, budget)
                    if top < 10**6:
                        assert bounds.need(la, top + 1) > budget
                        assert top == 0 or bounds.need(la, top) <= budget
    with pytest.raises(ValueError):
        PrefixBounds(1.5)


def test_texts_without_tokens_are_not_prepared():
    rarity = RarityOrder.from_texts(["write a poem"])
    for text in ("", "写一首诗", "!!! ...", "🙂"):
        assert prepare((RECORD, "x"), (RECORD, 0, "x"), text, rarity, PrefixBounds(0.7)) is None
    with pytest.raises(KeyError, match="rarity order"):
        prepare((RECORD, "x"), (RECORD, 0, "x"), "an unseen word", rarity, PrefixBounds(0.7))


def test_greedy_scan_follows_accepted_partners_only():
    def node(i):
        return (RECORD, str(i))

    def edge(later, earlier, score):
        return ScoredPair(node(later), (RECORD, later), node(earlier), (RECORD, earlier), score)

    edges = [edge(2, 1, 0.8), edge(3, 2, 0.9), edge(4, 1, 0.75), edge(4, 3, 0.75),
             edge(5, 1, 0.7), edge(2, 1, 0.8)]  # 3's only partner 2 is rejected; 0.7 is kept
    rejected = greedy_scan(reversed(edges), 0.7)
    assert set(rejected) == {node(2), node(4)}
    assert rejected[node(4)] == edge(4, 1, 0.75)  # tie: the earlier partner
    pool_edge = ScoredPair(node(9), (RECORD, 9), (POOL, "0"), (POOL, 0), 0.9)
    assert greedy_scan([pool_edge], 0.7) == {node(9): pool_edge}
    with pytest.raises(ValueError, match="earlier"):
        greedy_scan([edge(1, 2, 0.9)], 0.7)


def test_pick_best_prefers_higher_then_earlier():
    a, b, c = (Best(0.5, 3, (RECORD, "a"), "a"), Best(0.6, 5, (RECORD, "b"), "b"),
               Best(0.6, 4, (RECORD, "c"), "c"))
    assert pick_best([a, b, c]) == c == pick_best([c, b, a]) == pick_best([pick_best([a, b]), c])
    assert pick_best([]) is None


# -- the whole join against greedy_novelty ----------------------------------------------------

@pytest.mark.parametrize("threshold", [0.7, 0.5, 0.85, 0.0, 1.0])
def test_every_deciding_pair_is_found_once_with_rouge_score_floats(threshold):
    rng = random.Random(int(threshold * 100) + 3)
    pool = _salad(rng, 15) + ODD[:3]
    candidates = _salad(rng, 150) + _boundary_variants(rng, 30) + ODD
    items = _items(candidates, pool)
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    for hot_size in (None, 4):
        pairs = _scored_pairs(items, threshold, hot_size)
        keys = [(p.later, p.earlier) for p in pairs]
        assert len(keys) == len(set(keys)), "each pair is scored in exactly one group"
        text_of = {node: text for node, _, text in items}
        found = {key: p.score for key, p in zip(keys, pairs, strict=True)}
        for (later, earlier), score in list(found.items())[:400]:
            want = scorer.score(text_of[later], text_of[earlier])["rougeL"].fmeasure
            assert score == want
        for i, (a, order_a, text_a) in enumerate(items):
            for b, order_b, text_b in items[:i]:
                if a[0] == POOL and b[0] == POOL:
                    continue
                score = rouge.rouge_l(text_a, text_b)
                if score > threshold:
                    assert order_b < order_a and found.get((a, b)) == score, (text_a, text_b)


@pytest.mark.parametrize("threshold", [0.7, 0.5, 0.85, 0.0, 1.0])
@pytest.mark.parametrize("hot_size", [None, 3])
def test_word_salad_decisions_match_greedy_novelty(threshold, hot_size):
    rng = random.Random(int(threshold * 100) + 11)
    pool = _salad(rng, 20) + ODD[:3]
    candidates = _salad(rng, 300) + _boundary_variants(rng, 60) + ODD
    rng.shuffle(candidates)
    rejected = _assert_matches_greedy(candidates, pool, threshold, hot_size)
    if threshold == 0.7:
        assert 20 < rejected < len(candidates) - 20  # both kinds occur


def test_boundary_pair_is_decided_on_the_rouge_score_float():
    core = "write a short poem about the ocean"
    pool = [core + " and the deep blue sea today"]  # (7, 7, 13): 0.7000000000000001
    assert _join_greedy([core], pool, 0.7) == [(False, 0.7000000000000001, pool[0])]
    kept = _join_greedy([core + " in three lines"], [core + " for my friend"], 0.7)
    assert kept == [(True, 0.7, core + " for my friend")]  # (7, 10, 10): exactly 0.7 is kept


def test_golden_seeds_with_planted_near_duplicates_match_greedy_novelty():
    seeds = _seed_instructions()
    rng = random.Random(5)
    candidates = []
    for _ in range(400):
        text = rng.choice(seeds)
        for _ in range(rng.randint(1, 5)):
            text = _perturb(rng, text)
        candidates.append(text)
    rejected = _assert_matches_greedy(candidates, seeds, 0.7)
    assert 60 < rejected < len(candidates) - 60
    _assert_matches_greedy(seeds + candidates, [], 0.7)  # seeds judged too, no pool


def test_int_codes_past_the_code_point_space(monkeypatch):
    rng = random.Random(13)
    vocab = [f"w{i}" for i in range(60)]
    pool = _salad(rng, 10, vocab=vocab[:20])
    candidates = _salad(rng, 200, vocab=vocab, lengths=(3, 10))
    monkeypatch.setattr(rouge, "MAX_CODE_IDS", 30)
    assert isinstance(RarityOrder.from_texts(pool + candidates).code(["w1", "w2"]), tuple)
    _assert_matches_greedy(candidates, pool, 0.5)


def test_split_plan_buckets_only_hot_elements():
    assert split_plan([(1, 10), (2, 3), (3, 7)], 3) == {1: 4, 3: 3}
    with pytest.raises(ValueError):
        split_plan([], 0)
