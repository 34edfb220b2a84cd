"""Score, then threshold: named scores on a record, and the verdict of a score window.

Scorers (text statistics, the LLM judge, the learned classifier) only *add* a named score to
a row (`InstructionRecord.scores`, (name, value) pairs in the order they were measured);
`score_verdict` is the separate decision a `ScoreFilter` makes from one of them, with a reason
code and the deciding score, so a threshold can be tuned later by querying the output
instead of re-running the scorer (NeMo Curator's score/filter split).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence
from typing import Final

from filters.text_stats import TEXT_STATS
from filters.verdict import Verdict
from schemas import InstructionRecord, Reason

LLM_JUDGE: Final = "llm_judge"
CLASSIFIER: Final = "classifier"
TEXT_STATS_SCORER: Final = "text_stats"

# Which score names each scorer writes (a ScoreFilter may only name one of these).
SCORER_OUTPUTS: Final[dict[str, tuple[str, ...]]] = {
    TEXT_STATS_SCORER: TEXT_STATS,
    LLM_JUDGE: (LLM_JUDGE,),
    CLASSIFIER: (CLASSIFIER,),
}
# A ScoreFilter that names no bound uses these: AlpaGasus-style "rated 4 or more of 5" for the
# judge, "more likely good than bad" for the classifier. Text statistics have no default.
DEFAULT_MIN: Final[dict[str, float]] = {LLM_JUDGE: 4.0, CLASSIFIER: 0.5}


def score_of(record: InstructionRecord, name: str) -> float | None:
    """The record's score `name` (the latest one if measured twice), or None."""
    found = None
    for key, value in record.scores or ():
        if key == name:
            found = value
    return found


def with_scores(record: InstructionRecord, scores: Iterable[tuple[str, float]],
                **fields: object) -> InstructionRecord:
    """The record with `scores` added (a name measured again replaces its old value)."""
    new = [(name, float(value)) for name, value in scores]
    names = {name for name, _ in new}
    kept = tuple(pair for pair in record.scores or () if pair[0] not in names)
    return dataclasses.replace(record, scores=kept + tuple(new), **fields)


TURN_SCORE = "/"  # "llm_judge/turn 4 (assistant)": one reply's score within a dialogue


def dialogue_scores(name: str, per_turn: Sequence[tuple[str, float]]
                    ) -> list[tuple[str, float]]:
    """A dialogue's scores under `name`: the lowest reply's decides (a dialogue is as good as
    its worst answer), and every reply's own score is kept beside it, named by its turn."""
    if not per_turn:
        return []
    if len(per_turn) == 1 and per_turn[0][0] == "output":
        return [(name, per_turn[0][1])]  # a single-turn row: its one score, as before
    return [(name, min(v for _, v in per_turn))] + [
        (f"{name}{TURN_SCORE}{turn}", v) for turn, v in per_turn]


def worst_turn(record: InstructionRecord, name: str, value: float) -> str | None:
    """The turn whose own score under `name` is `value` (the first), if the row keeps one."""
    prefix = f"{name}{TURN_SCORE}"
    return next((key[len(prefix):] for key, v in record.scores or ()
                 if key.startswith(prefix) and v == value), None)


def score_verdict(record: InstructionRecord, name: str, minimum: float | None,
                  maximum: float | None) -> Verdict:
    """Keep a record whose score `name` lies in [minimum, maximum] (either bound optional).

    A record without that score (its scorer failed for it, e.g. a judge request that is now a
    dead letter) is dropped as `missing_score`: it was not shown to be good enough.
    """
    value = score_of(record, name)
    if value is None or math.isnan(value):
        return Verdict.drop(Reason.MISSING_SCORE, f"no {name!r} score on the row")
    turn = worst_turn(record, name, value)
    where = f" at {turn}" if turn else ""
    if minimum is not None and value < minimum:
        return Verdict.drop(Reason.SCORE_BELOW_MIN,
                            f"{name} {value:g} < min {minimum:g}{where}", score=value)
    if maximum is not None and value > maximum:
        return Verdict.drop(Reason.SCORE_ABOVE_MAX,
                            f"{name} {value:g} > max {maximum:g}{where}", score=value)
    return Verdict.ok(value)
