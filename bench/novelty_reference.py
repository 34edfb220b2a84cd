"""The straightforward novelty filter, as the Alpaca / Self-Instruct scripts run it.

Kept out of ``filters/`` on purpose: it is the yardstick, not library code. It uses only
``rouge_score`` itself: the scorer's own tokenizer, once per text, and ``rouge_scorer._score_lcs``
(pure-Python DP table) against every pool text, optionally mapped over a ``multiprocessing.Pool``
as ``stanford_alpaca/generate_instruction.py`` does (we keep one pool alive for the whole run,
which only flatters the reference).
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterable, Sequence
from functools import partial

from rouge_score import rouge_scorer

from filters.novelty import NoveltyVerdict


def _fmeasure(target: list[str], prediction: list[str]) -> float:
    return rouge_scorer._score_lcs(target, prediction).fmeasure


def reference_greedy_novelty(
    candidates: Sequence[str],
    pool: Iterable[str],
    *,
    threshold: float = 0.7,
    processes: int | None = None,
) -> list[NoveltyVerdict]:
    """Sequential greedy ROUGE-L filter: reject iff max F over the pool ``> threshold``.

    Verdicts carry the true maximum score and the earliest pool text reaching it (``None`` and
    0.0 when the maximum is 0). ``processes > 1`` maps the pairwise scores over a process pool.
    """
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    texts = list(pool)
    pool_tokens = [scorer._tokenizer.tokenize(t) for t in texts]
    workers = multiprocessing.Pool(processes) if processes and processes > 1 else None
    verdicts = []
    try:
        for text in candidates:
            tokens = scorer._tokenizer.tokenize(text)
            score_one = partial(_fmeasure, tokens)
            if workers is not None:
                scores = workers.map(score_one, pool_tokens)
            else:
                scores = [score_one(t) for t in pool_tokens]
            best = max(scores, default=0.0)
            accepted = not best > threshold
            if best > 0:
                at = scores.index(best)
                verdicts.append(NoveltyVerdict(accepted, best, texts[at], at))
            else:
                verdicts.append(NoveltyVerdict(accepted, 0.0, None, None))
            if accepted:
                texts.append(text)
                pool_tokens.append(tokens)
    finally:
        if workers is not None:
            workers.close()
            workers.join()
    return verdicts
