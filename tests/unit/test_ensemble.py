"""Output ensembling: the 3-output rule is the paper's, and N outputs generalize it."""

from __future__ import annotations

import random
import string

import pytest
from rouge_score import rouge_scorer

from filters.ensemble import ConsensusPath, consensus, normalize_answer
from schemas import Reason

_SCORER = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def _paper_normalize(s: str) -> str:
    exclude = set(string.punctuation)
    return " ".join("".join(ch for ch in s.lower() if ch not in exclude).split())


def _paper_ensemble(io: str, o1: str, o2: str, rule: str) -> str | None:
    """`ensemble_output.py`'s main loop for one line, transcribed literally (rouge-score)."""
    io, o1, o2 = io.strip(), o1.strip(), o2.strip()
    a, b, c = _paper_normalize(io), _paper_normalize(o1), _paper_normalize(o2)

    def rl(x: str, y: str) -> float:
        return _SCORER.score(prediction=x, target=y)["rougeL"].fmeasure

    if a == b or a == c:
        return io
    if b == c:
        return io if rule == "generator_output" else o1
    r1, r2, r3 = rl(a, b), rl(a, c), rl(b, c)
    if r1 <= r2 and r1 <= r3:
        worst = r1
    elif r2 <= r1 and r2 <= r3:
        worst = r2
    else:
        worst = r3
    s1, s2, s3 = r1 + r2, r1 + r3, r2 + r3
    if s1 >= s2 and s1 >= s3:
        best = io
    elif s2 >= s1 and s2 >= s3:
        best = o1
    else:
        best = o2
    return best if worst > 0.01 and best != "" else None


_WORDS = ["the", "cat", "cats", "sat", "sitting", "on", "mat", "a", "dog", "runs", "running",
          "yes", "no", "42", "blue", "Blue!", "don't", "dont", "x"]


def _random_output(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.05:
        return ""
    if roll < 0.08:
        return rng.choice(["...", "?!", " "])
    words = [rng.choice(_WORDS) for _ in range(rng.randint(1, 6))]
    text = " ".join(words)
    if rng.random() < 0.3:
        text = text.capitalize() + rng.choice([".", "!", "", " ."])
    return rng.choice(["", " ", "\n"]) + text + rng.choice(["", " ", "\n"])


@pytest.mark.parametrize("rule", ["agreed_output", "generator_output"])
def test_three_outputs_follow_the_paper_exactly(rule):
    rng = random.Random(20231)
    paths = set()
    for _ in range(3000):
        outs = [_random_output(rng) for _ in range(3)]
        if rng.random() < 0.25:  # force agreements of every kind
            i, j = rng.sample(range(3), 2)
            outs[j] = outs[i].upper() + rng.choice(["", ".", "  "])
        decision = consensus(outs, agree_rule=rule)
        assert decision.output == _paper_ensemble(*outs, rule), outs
        paths.add(decision.path)
    assert paths == set(ConsensusPath)


def test_ties_go_to_the_generator_then_model_order():
    # All three pairwise scores equal: every sum ties, the generator wins.
    d = consensus(["red apple", "red pear", "red plum"])
    assert d.path == ConsensusPath.ROUGE_SELECTED and d.selected == 0
    assert d.sums[0] == d.sums[1] == d.sums[2]
    # Candidates 1 and 2 tie above the generator: model order decides.
    d = consensus(["green", "red apple pie", "red apple tart"])
    assert d.path == ConsensusPath.DISAGREEMENT  # "green" shares nothing: min pairwise 0
    d = consensus(["apple green", "red apple pie", "red apple tart"])
    assert d.selected == 1 and d.sums[1] == d.sums[2] > d.sums[0]


def test_threshold_is_strictly_greater_than():
    d = consensus(["alpha beta", "gamma delta", "alpha delta"], min_pairwise_rouge=0.5)
    assert d.min_pairwise == 0.0 and not d.keep
    d = consensus(["alpha beta", "alpha gamma", "alpha delta"], min_pairwise_rouge=0.5)
    assert d.min_pairwise == 0.5 and not d.keep
    assert consensus(["alpha beta", "alpha gamma", "alpha delta"],
                     min_pairwise_rouge=0.49).keep


def test_normalization_and_stemming_decide_matches():
    assert normalize_answer("  Don't  STOP!\n") == "dont stop"
    d = consensus(["Yes.", "yes", "no"])
    assert d.path == ConsensusPath.EXACT_MATCH and d.output == "Yes."
    d = consensus(["The cats are running", "the cat is runs", "dogs bark"])
    scores = {(i, j): s for i, j, s in d.pairwise}
    assert scores[(0, 1)] == 0.75  # "the", "cat", "run": 0.25 without the stemmer


def test_verdicts_carry_the_path_or_the_reason():
    kept = consensus(["a b", "a b", "c"]).verdict()
    assert kept.keep and kept.detail == "exact_match"
    dropped = consensus(["alpha", "beta", "gamma"]).verdict()
    assert not dropped.keep and dropped.reason == Reason.ENSEMBLE_DISAGREEMENT
    assert dropped.score == 0.0


def test_agree_rules_pick_different_outputs():
    outs = ["something else entirely", "Paris.", "paris"]
    assert consensus(outs, agree_rule="agreed_output").output == "Paris."
    assert consensus(outs, agree_rule="generator_output").output == "something else entirely"
    assert consensus(outs).path == ConsensusPath.AGREED_OTHERS


def test_n_outputs_generalize():
    # Two outputs: exact match, else the pair's score decides; ties keep the generator.
    assert consensus(["Yes", "yes."]).path == ConsensusPath.EXACT_MATCH
    d = consensus(["red apple", "red pear"])
    assert d.selected == 0 and d.min_pairwise == 0.5
    # The generator matching any extra model wins before any agreement among the others.
    d = consensus(["x y", "p q", "p q", "x y"])
    assert d.path == ConsensusPath.EXACT_MATCH and d.selected == 0
    # The largest agreeing group of extra models wins; equal sizes: the earlier group.
    d = consensus(["zzz", "a", "b", "b", "a", "b"])
    assert d.path == ConsensusPath.AGREED_OTHERS and d.selected == 2
    d = consensus(["zzz", "a", "b", "b", "a"])
    assert d.selected == 1
    # No agreement: every pair counts in the sums and in the minimum.
    d = consensus(["a b c", "a b d", "a b e", "a b c d"])
    assert len(d.pairwise) == 6 and d.selected == 3
    assert consensus(["a b", "a c", "a d", "q"]).path == ConsensusPath.DISAGREEMENT


def test_bad_arguments():
    with pytest.raises(ValueError):
        consensus(["only one"])
    with pytest.raises(ValueError):
        consensus(["a", "b", "c"], agree_rule="majority")  # type: ignore[arg-type]


def test_an_ensembled_output_that_only_repeats_the_task_is_rejected():
    from filters.ensemble import echo_verdict

    task = "Summarize the following article in one sentence for a busy reader."
    article = "The city opened a new library on Monday. It has 40,000 books."
    assert echo_verdict(task, article, article).reason == Reason.INPUT_EQUALS_OUTPUT
    assert echo_verdict(task, article, " the city opened a new library on monday  it has "
                        "40000 books").reason == Reason.INPUT_EQUALS_OUTPUT
    assert echo_verdict(task, article, "Summarize the following article.").reason == \
        Reason.OUTPUT_ECHOES_INSTRUCTION
    # a short label that the question offers is an answer, not an echo
    assert echo_verdict("Is this review positive or negative?", "Great food.",
                        "Positive").keep
    assert echo_verdict(task, article, "A new library with 40,000 books opened.").keep
