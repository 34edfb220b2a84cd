"""filters.rouge must return rouge-score 0.1.2's exact values: tokens, LCS and the F float."""

from __future__ import annotations

import random
import string

import pytest
from rapidfuzz.distance import LCSseq
from rouge_score import rouge_scorer, tokenizers

from filters import rouge
from filters.rouge import lcs_length, rouge_l, rouge_l_f, rouge_l_from_counts, tokenize

PLAIN = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
STEMMED = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)

BASE = "write a short poem about the ocean"  # 7 tokens


def _theirs(a: str, b: str, stem: bool = False) -> float:
    return (STEMMED if stem else PLAIN).score(a, b)["rougeL"].fmeasure


def _dp_lcs(a, b) -> int:
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


# (a, b, lcs, len_a, len_b, expected float): real strings hitting the boundary counts.
THRESHOLD_TABLE = [
    # 2*7/20 = 0.7 algebraically; rouge-score's 2PR/(P+R) rounds up -> rejected at > 0.7
    (BASE, BASE + " and the deep blue sea today", 7, 7, 13, 0.7000000000000001),
    (BASE + " today", BASE + " and the big blue sea", 7, 8, 12, 0.7000000000000001),
    (BASE + " right now", BASE + " and the blue sea", 7, 9, 11, 0.7000000000000001),
    # exactly 0.7 in floating point -> kept at > 0.7
    (BASE + " in three lines", BASE + " for my friend", 7, 10, 10, 0.7),
]


@pytest.mark.parametrize(("a", "b", "lcs", "la", "lb", "expected"), THRESHOLD_TABLE)
def test_threshold_boundary_matches_rouge_score(a, b, lcs, la, lb, expected):
    ta, tb = tokenize(a), tokenize(b)
    assert (lcs_length(ta, tb), len(ta), len(tb)) == (lcs, la, lb)
    assert _theirs(a, b) == expected
    assert rouge_l(a, b) == expected
    assert rouge_l(b, a) == expected
    assert rouge_l_from_counts(lcs, la, lb) == expected


def test_seven_seven_thirteen_is_rejected_and_exact_point_seven_is_kept():
    assert rouge_l_from_counts(7, 7, 13) == 0.7000000000000001 > 0.7
    assert 2 * 7 / (7 + 13) == 0.7  # the algebraically equal formula would keep it
    assert not rouge_l_from_counts(7, 10, 10) > 0.7


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("写一首诗", "写一首歌"),
        ("写一首诗", "写一首诗"),
        ("¿¡!!!...", "¿¡!!!..."),
        ("🙂🙂", "🙂🙂"),
        ("", ""),
        ("", "write a poem"),
        ("write a poem", "   \n\t "),
        ("写一首诗 poem", "poem 写一首歌"),
        ("İstanbul Kelvin K", "istanbul k"),  # str.lower() turns these into ASCII letters
        ("１２３ full-width digits", "123 full width digits"),
    ],
)
def test_non_ascii_and_empty_match_rouge_score(a, b):
    for stem in (False, True):
        assert rouge_l(a, b, stem) == _theirs(a, b, stem)
        assert tokenize(a, stem) == tuple(tokenizers.DefaultTokenizer(stem).tokenize(a))


def test_non_ascii_scores_zero():
    assert tokenize("写一首诗") == ()
    assert rouge_l("写一首诗", "写一首歌") == 0.0
    assert rouge_l_f((), ("a",)) == 0.0
    assert rouge_l_from_counts(0, 0, 5) == 0.0
    assert rouge_l_from_counts(0, 3, 5) == 0.0


STEM_WORDS = (
    "caresses flies dies mules denied died agreed owned humbled sized meeting stating siezing "
    "itemization sensational traditional reference colonizer plotted running runs ran happily "
    "generously generalization generalizations oscillators ponies ties skies dying lying news "
    "innings proceed exceed succeed abundantly relational conditional rational valenci hesitanci "
    "digitizer conformabli radicalli differentli vileli analogousli vietnamization predication "
    "operator feudalism decisiveness hopefulness callousness formaliti sensitiviti sensibiliti "
    "triplicate formative formalize electriciti electrical hopeful goodness revival allowance "
    "inference airliner gyroscopic adjustable defensible irritant replacement adjustment "
    "dependent adoption homologou communism activate angulariti homologous effective bowdlerize "
    "probate rate cease controll roll a an the is was 3d 2023 abc1 x9y covid19 gpt4 tl;dr "
    "don't it's e-mail U.S.A. naïve café Œuvre straße"
).split()


def test_stemming_parity_on_word_list():
    theirs = tokenizers.DefaultTokenizer(use_stemmer=True)
    for word in STEM_WORDS:
        assert tokenize(word, stem=True) == tuple(theirs.tokenize(word)), word
    sentence = " ".join(STEM_WORDS)
    assert tokenize(sentence, stem=True) == tuple(theirs.tokenize(sentence))


def _random_text(rng: random.Random, vocab: list[str]) -> str:
    parts = []
    for _ in range(rng.randint(0, 25)):
        word = rng.choice(vocab)
        if rng.random() < 0.2:
            word = word.upper() if rng.random() < 0.5 else word.capitalize()
        parts.append(word)
        parts.append(rng.choice([" ", " ", " ", ", ", ". ", "\n", " - ", "'", "/", "  "]))
    return "".join(parts)


def test_random_text_parity_with_rouge_score():
    rng = random.Random(1234)
    vocab = STEM_WORDS[:60] + list(string.ascii_lowercase[:6]) + ["42", "7", "写", "é", "🙂"]
    pairs = [(_random_text(rng, vocab), _random_text(rng, vocab)) for _ in range(2500)]
    for a, b in pairs:
        assert rouge_l(a, b) == _theirs(a, b), (a, b)
    for a, b in pairs[:1000]:
        assert rouge_l(a, b, stem=True) == _theirs(a, b, stem=True), (a, b)


def test_lcs_matches_dynamic_programming_on_random_token_lists():
    rng = random.Random(7)
    for _ in range(2000):
        vocab = [f"t{i}" for i in range(rng.randint(1, 12))]
        a = [rng.choice(vocab) for _ in range(rng.randint(0, 70))]
        b = [rng.choice(vocab) for _ in range(rng.randint(0, 70))]
        assert lcs_length(a, b) == _dp_lcs(a, b)
        assert lcs_length(tuple(a), tuple(b)) == rouge_scorer._lcs_table(a, b)[-1][-1]


def test_lcs_exact_for_ids_in_the_surrogate_range():
    """Token ids become code points, surrogates included; rapidfuzz must still compare them."""
    vocab: dict[str, int] = {f"w{i}": 0xD7F0 + i for i in range(40)}  # straddles 0xD800
    rng = random.Random(3)
    for _ in range(300):
        a = [rng.choice(list(vocab)) for _ in range(rng.randint(1, 40))]
        b = [rng.choice(list(vocab)) for _ in range(rng.randint(1, 40))]
        code_a = rouge.encode_tokens(a, dict(vocab))
        code_b = rouge.encode_tokens(b, dict(vocab))
        assert LCSseq.similarity(code_a, code_b) == _dp_lcs(a, b)


def test_lcs_falls_back_when_vocabulary_exceeds_code_points(monkeypatch):
    monkeypatch.setattr(rouge, "MAX_CODE_IDS", 3)
    a, b = list("abcdefab"), list("badcfeba")
    assert lcs_length(a, b) == _dp_lcs(a, b)


def test_rouge_l_f_is_symmetric_bit_for_bit():
    rng = random.Random(11)
    for _ in range(3000):
        la, lb = rng.randint(1, 150), rng.randint(1, 150)
        lcs = rng.randint(0, min(la, lb))
        assert rouge_l_from_counts(lcs, la, lb) == rouge_l_from_counts(lcs, lb, la)
        expected = rouge_scorer.scoring.fmeasure(lcs / lb, lcs / la)
        assert rouge_l_from_counts(lcs, la, lb) == expected
