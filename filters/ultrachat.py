"""UltraChat's pure rules: list answers parsed into items, and each dialogue turn judged.

Source: Ding et al. 2023 (UltraChat, arXiv:2305.14233), §3 (data construction) and its
post-processing: dialogues whose simulated user answers like the assistant, with empty or
repeated turns, turns cut by the length limit, or refusal templates are dropped. The paper gives
these as criteria, not code; the concrete rules below are ours, and every threshold and
pattern is configuration (`pipelines/recipes/ultrachat/config.py`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from filters.rouge import rouge_l
from filters.verdict import Verdict
from schemas import Reason

_ITEM = re.compile(r"^\s*(?:\d{1,3}\s*[.):]|[-*\u2022])\s+(.*\S)\s*$")
_USER_LABEL = re.compile(r"^\s*\*{0,2}(?:user|human|me)\*{0,2}\s*:\*{0,2}\s*", re.IGNORECASE)
_WRAPPING_QUOTES = ('"', "\u201c", "\u201d")

# How an assistant's answer opens; a simulated user that opens like this has switched roles
# (the failure the paper saw when the user model is given only the history).
DEFAULT_DRIFT_OPENERS: tuple[str, ...] = (
    "assistant:", "ai:", "bot:", "sure", "certainly", "of course", "absolutely",
    "great question", "i'd be happy to", "i would be happy to", "i'm happy to", "here is",
    "here are", "here's", "as an ai",
)
# Refusal and disclaimer templates, searched (case-insensitive) in an assistant turn's opening.
DEFAULT_REFUSALS: tuple[str, ...] = (
    r"^(?:i'?m|i am) sorry,? but",
    r"^i (?:cannot|can't|can not|am unable to|'m unable to) (?:help|assist|provide|comply)",
    r"\bas an ai(?: language model)?\b",
    r"\bas a language model\b",
)
REFUSAL_WINDOW = 300  # characters of a turn searched for a refusal template


def parse_list(text: str) -> list[str]:
    """The items of a numbered or bulleted list answer, in order ("1. x", "2) y", "- z").

    Lines that are not list items (a preamble, a closing remark) are not items; an answer
    without any item line gives [].
    """
    items = []
    for line in text.splitlines():
        match = _ITEM.match(line)
        if match:
            items.append(strip_quotes(match.group(1).strip()))
    return [item for item in items if item]


def strip_quotes(text: str) -> str:
    """Quotes that wrap the whole text carry nothing ('"What is X?"' -> 'What is X?')."""
    if len(text) >= 2 and text[0] in _WRAPPING_QUOTES and text[-1] in _WRAPPING_QUOTES:
        return text[1:-1].strip()
    return text


def clean_user_turn(text: str) -> str:
    """The simulated user's message without a leading "User:" label or wrapping quotes: the
    label is how the prompt names the role, not part of what the user says."""
    return strip_quotes(_USER_LABEL.sub("", text.strip(), count=1).strip())


@dataclass(frozen=True)
class TurnRules:
    """What makes a turn end its dialogue (thresholds and patterns from the config)."""

    repeat_threshold: float = 0.9  # ROUGE-L to an earlier turn of the dialogue above this
    drift_openers: tuple[str, ...] = DEFAULT_DRIFT_OPENERS
    refusals: tuple[str, ...] = DEFAULT_REFUSALS
    _refusal: re.Pattern[str] | None = field(init=False, default=None, repr=False,
                                             compare=False)

    def __post_init__(self) -> None:
        if self.refusals:
            object.__setattr__(self, "_refusal", re.compile(
                "|".join(f"(?:{p})" for p in self.refusals), re.IGNORECASE))

    def refusal(self, text: str) -> str | None:
        if self._refusal is None:
            return None
        hit = self._refusal.search(text.strip()[:REFUSAL_WINDOW])
        return hit.group(0) if hit else None


def drift_opener(text: str, openers: Sequence[str]) -> str | None:
    """The assistant-style opener the user turn starts with, if any (whole words only)."""
    lowered = text.strip().lower()
    for opener in openers:
        if lowered.startswith(opener) and (
                len(lowered) == len(opener) or not lowered[len(opener)].isalnum()
                or not opener[-1].isalnum()):
            return opener
    return None


def check_turn(text: str, finish_reason: str | None, role: str, earlier: Sequence[str],
               rules: TurnRules) -> Verdict:
    """Judge one new turn against the dialogue so far; the first failing rule decides.

    Order: cut by the length limit, empty, the role's own failure (a user turn that answers
    like the assistant; an assistant refusal), then a repeat of an earlier turn (score: the
    highest ROUGE-L to one).
    """
    if finish_reason == "length":
        return Verdict.drop(Reason.TURN_TRUNCATED, f"{role} turn stopped at max_tokens")
    if not text.strip():
        return Verdict.drop(Reason.EMPTY_TURN, f"empty {role} turn")
    if role == "user":
        opener = drift_opener(text, rules.drift_openers)
        if opener is not None:
            return Verdict.drop(Reason.ROLE_DRIFT, f"user turn opens with {opener!r}", 1.0)
    else:
        refusal = rules.refusal(text)
        if refusal is not None:
            return Verdict.drop(Reason.REFUSAL, refusal.lower())
    best = max((rouge_l(text, other) for other in earlier), default=0.0)
    if best > rules.repeat_threshold:
        return Verdict.drop(Reason.REPEATED_TURN, f"{role} turn ROUGE-L {best:.3f} to an "
                            "earlier turn", best)
    return Verdict.ok(best)
