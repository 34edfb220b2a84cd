"""The pruned novelty filter decides exactly like the straightforward rouge-score greedy filter."""

from __future__ import annotations

import random

import pytest
from conftest import golden_seed_instructions

from bench.novelty_reference import reference_greedy_novelty
from filters import rouge
from filters.novelty import NoveltyIndex, NoveltyVerdict, greedy_novelty

WORDS = "write a poem story about the sea sky city dog cat in short long".split()
ODD = ["", "写一首诗", "写一首歌", "!!! ...", "🙂", "写一首诗 poem", "   ", "İ K"]


def _seed_instructions() -> list[str]:
    return golden_seed_instructions()


def _salad(rng: random.Random, n: int, vocab=WORDS, lengths=(3, 14)) -> list[str]:
    """Word salad over a tiny vocabulary: lots of pairs land near (and exactly on) 0.7."""
    out = []
    for _ in range(n):
        words = [rng.choice(vocab) for _ in range(rng.randint(*lengths))]
        if rng.random() < 0.1:
            words[0] = words[0].upper() + ","
        out.append(" ".join(words))
    return out


def _boundary_variants(rng: random.Random, n: int) -> list[str]:
    """Texts sharing a 7-word core plus extra words: (lcs, la, lb) like (7, 7, 13), (7, 10, 10)."""
    core = "write a short poem about the ocean"
    extras = [f"x{i}" for i in range(40)]
    return [
        core + " " + " ".join(rng.sample(extras, rng.choice([0, 1, 2, 3, 4, 5, 6])))
        for _ in range(n)
    ]


def _perturb(rng: random.Random, text: str) -> str:
    words = text.split()
    op = rng.randrange(6)
    i = rng.randrange(len(words))
    if op == 0 and len(words) > 1:
        del words[i]
    elif op == 1:
        words.insert(i, rng.choice(WORDS))
    elif op == 2:
        words[i] = rng.choice(WORDS)
    elif op == 3 and len(words) > 1:
        j = rng.randrange(len(words))
        words[i], words[j] = words[j], words[i]
    elif op == 4:
        words = words[: max(1, len(words) * 2 // 3)]
    else:
        words = [w.upper() if rng.random() < 0.3 else w for w in words] + ["please!"]
    return " ".join(words)


def _assert_same(
    candidates: list[str],
    ours: list[NoveltyVerdict],
    ref: list[NoveltyVerdict],
    threshold: float,
    exact: bool,
) -> None:
    """Same decisions; rejections (and everything when ``exact``) identical to the reference."""
    assert [v.accepted for v in ours] == [v.accepted for v in ref]
    for text, got, want in zip(candidates, ours, ref, strict=True):
        if exact or not want.accepted:
            assert got == want
        else:  # accepted: a lower bound of the true maximum, achieved by the text it names
            assert got.score <= want.score and got.score <= threshold
            if got.most_similar is None:
                assert got.score == 0.0
            else:
                assert rouge.rouge_l(text, got.most_similar) == got.score > 0


@pytest.mark.parametrize("threshold", [0.7, 0.5, 0.85, 0.0, 1.0])
def test_word_salad_matches_reference(threshold):
    rng = random.Random(int(threshold * 100) + 1)
    pool = _salad(rng, 40) + ODD[:3]
    candidates = _salad(rng, 260) + _boundary_variants(rng, 60) + ODD
    rng.shuffle(candidates)
    ref = reference_greedy_novelty(candidates, pool, threshold=threshold)
    if threshold == 0.7:
        assert 20 < sum(not v.accepted for v in ref) < len(candidates) - 20  # both kinds occur
    for exact in (False, True):
        ours = greedy_novelty(candidates, pool, threshold=threshold, exact_scores=exact)
        _assert_same(candidates, ours, ref, threshold, exact)


def test_boundary_pairs_decided_on_rouge_score_floats():
    core = "write a short poem about the ocean"
    index = NoveltyIndex([core + " and the deep blue sea today"])  # (7, 7, 13): 0.7000000000000001
    verdict = index.check(core)
    assert not verdict.accepted and verdict.score == 0.7000000000000001
    assert verdict.most_similar_index == 0
    index = NoveltyIndex([core + " for my friend"])  # (7, 10, 10): exactly 0.7 -> kept
    verdict = index.check(core + " in three lines")
    assert verdict.accepted and verdict.score == 0.7


def test_near_duplicates_of_golden_seeds_match_reference():
    seeds = _seed_instructions()
    rng = random.Random(5)
    candidates = []
    for _ in range(600):  # 1..5 edits: from clear duplicates to clearly novel texts
        text = rng.choice(seeds)
        for _ in range(rng.randint(1, 5)):
            text = _perturb(rng, text)
        candidates.append(text)
    ref = reference_greedy_novelty(candidates, seeds)
    rejected = sum(not v.accepted for v in ref)
    assert 100 < rejected < len(candidates) - 100
    for exact in (False, True):
        ours = greedy_novelty(candidates, seeds, exact_scores=exact)
        _assert_same(candidates, ours, ref, 0.7, exact=exact)


def test_non_ascii_and_empty_are_never_rejected():
    pool = ["写一首诗", "", "write a poem", "!!!"]
    verdicts = greedy_novelty(["写一首诗", "", "写一首歌", "?!", "🙂🙂"], pool, exact_scores=True)
    assert all(v == NoveltyVerdict(True, 0.0, None, None) for v in verdicts)
    assert greedy_novelty(["write a poem"], [], exact_scores=True) == [
        NoveltyVerdict(True, 0.0, None, None)
    ]
    assert greedy_novelty(["a poem 写"], ["写 a poem"]) == [
        NoveltyVerdict(False, 1.0, "写 a poem", 0)
    ]


def test_index_api_check_does_not_add():
    index = NoveltyIndex(["write a poem about the sea", "", "写"])
    assert len(index) == 3 and index.texts == ("write a poem about the sea", "", "写")
    verdict = index.check("Write a poem about the sea!")
    assert verdict == NoveltyVerdict(False, 1.0, "write a poem about the sea", 0)
    assert len(index) == 3
    assert index.check("tell me a joke").accepted
    index.add("tell me a joke")
    assert len(index) == 4
    assert index.check("Tell me a joke.") == NoveltyVerdict(False, 1.0, "tell me a joke", 3)
    with pytest.raises(ValueError):
        NoveltyIndex(threshold=1.5)


def test_incremental_index_with_rebuilds_and_unpruned_mode_match_reference():
    """No order hint: the rarity order is rebuilt as the pool doubles; decisions must not move."""
    rng = random.Random(9)
    pool = _salad(rng, 5)
    candidates = _salad(rng, 500, lengths=(3, 25)) + _boundary_variants(rng, 100)
    rng.shuffle(candidates)
    ref = reference_greedy_novelty(candidates, pool)
    for prune in (True, False):
        index = NoveltyIndex(pool, prune=prune, exact_scores=True)
        ours = []
        for text in candidates:
            verdict = index.check(text)
            if verdict.accepted:
                index.add(text)
            ours.append(verdict)
        _assert_same(candidates, ours, ref, 0.7, exact=True)


def test_int_code_fallback_for_huge_vocabularies(monkeypatch):
    """Past the code-point space the index compares int lists; decisions are unchanged."""
    rng = random.Random(13)
    vocab = [f"w{i}" for i in range(60)]
    pool = _salad(rng, 10, vocab=vocab[:20])
    candidates = _salad(rng, 200, vocab=vocab, lengths=(3, 10))
    ref = reference_greedy_novelty(candidates, pool, threshold=0.5)
    monkeypatch.setattr(rouge, "MAX_CODE_IDS", 30)  # crossed while candidates are prepared
    for exact in (False, True):
        ours = greedy_novelty(candidates, pool, threshold=0.5, exact_scores=exact)
        _assert_same(candidates, ours, ref, 0.5, exact=exact)
    index = NoveltyIndex(pool, threshold=0.5)  # crossed by check/add one text at a time
    ours = []
    for text in candidates:
        verdict = index.check(text)
        if verdict.accepted:
            index.add(text)
        ours.append(verdict)
    assert not index._str_codes
    _assert_same(candidates, ours, ref, 0.5, exact=False)
