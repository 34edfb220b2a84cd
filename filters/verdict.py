"""The value every filter returns: keep, or drop with a reason code and the deciding score."""

from __future__ import annotations

from dataclasses import dataclass

from schemas.reasons import Reason


@dataclass(frozen=True, slots=True)
class Verdict:
    keep: bool
    reason: Reason | None = None
    score: float | None = None
    detail: str = ""

    @staticmethod
    def ok(score: float | None = None) -> Verdict:
        return Verdict(True, None, score)

    @staticmethod
    def drop(reason: Reason, detail: str = "", score: float | None = None) -> Verdict:
        return Verdict(False, reason, score, detail)
