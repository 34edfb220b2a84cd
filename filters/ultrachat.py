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
    "here are", "here's", "as an ai", "i'm ready", "i am ready", "i'm here to help",
    "i am here to help", "how can i help", "how can i assist", "what can i do for you",
)
# Phrases only the assistant says, searched anywhere in a user turn: a user turn that ends
# "What's your next question?" has switched roles even when it opens like a user.
DEFAULT_DRIFT_PHRASES: tuple[str, ...] = (
    r"\b(?:i'?m|i am) (?:ready|here|happy|glad) to (?:help|assist)\b",
    r"\byour next question\b",
    r"\bhow (?:can|may) i (?:help|assist)(?: you)?\b",
    r"\bfeel free to ask\b",
    r"\bwhat else would you like to (?:know|ask)\b",
)
# Labels that, opening a line of a turn, mean the model wrote the other side's turn too. A
# turn that shows a sample chat on purpose is caught as well: empty the list to allow it.
DEFAULT_SPEAKER_LABELS: tuple[str, ...] = ("user", "human", "assistant", "ai assistant",
                                           "chatbot")
_SENTENCE_END = re.compile(r"(?<=[.!?\u3002\uff01\uff1f])\s+|\n+")
LOOP_MIN_WORDS = 4  # a repeated sentence shorter than this is a refrain, not a loop
LOOP_SPAN = 10  # words: a sequence this long seen `loop_repeats` times is a loop
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
    drift_phrases: tuple[str, ...] = DEFAULT_DRIFT_PHRASES
    loop_repeats: int = 3  # one sentence (or LOOP_SPAN words) this many times; 0: off
    speaker_labels: tuple[str, ...] = DEFAULT_SPEAKER_LABELS  # (): no speaker_label rule
    _refusal: re.Pattern[str] | None = field(init=False, default=None, repr=False,
                                             compare=False)
    _drift: re.Pattern[str] | None = field(init=False, default=None, repr=False,
                                           compare=False)
    _speaker: re.Pattern[str] | None = field(init=False, default=None, repr=False,
                                             compare=False)

    def __post_init__(self) -> None:
        if self.refusals:
            object.__setattr__(self, "_refusal", re.compile(
                "|".join(f"(?:{p})" for p in self.refusals), re.IGNORECASE))
        if self.speaker_labels:
            labels = "|".join(re.escape(x) for x in sorted(self.speaker_labels, key=len,
                                                            reverse=True))
            object.__setattr__(self, "_speaker", re.compile(
                rf"^[ \t>*_]*({labels})[ \t*_]*:", re.IGNORECASE | re.MULTILINE))
        if self.drift_phrases:
            object.__setattr__(self, "_drift", re.compile(
                "|".join(f"(?:{p})" for p in self.drift_phrases), re.IGNORECASE))

    def drift_phrase(self, text: str) -> str | None:
        hit = self._drift.search(text) if self._drift is not None else None
        return hit.group(0) if hit else None

    def speaker_line(self, text: str) -> str | None:
        """The speaker label a line of the turn opens with ("User:", "Assistant:"), if any."""
        hit = self._speaker.search(text) if self._speaker is not None else None
        return hit.group(0).strip(" \t>*_") if hit else None

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


def turn_loop(text: str, repeats: int) -> tuple[str, int] | None:
    """A passage the turn repeats `repeats` times or more, and how often: a sentence of
    LOOP_MIN_WORDS words or more, or (for loops without punctuation) a LOOP_SPAN-word
    sequence seen at that many places that do not overlap. None: no loop (or `repeats` 0)."""
    if repeats < 2:
        return None
    counts: dict[str, int] = {}
    for sentence in _SENTENCE_END.split(text):
        key = " ".join(sentence.lower().split())
        if len(key.split()) >= LOOP_MIN_WORDS:
            counts[key] = counts.get(key, 0) + 1
    found = max(counts.items(), key=lambda kv: kv[1], default=None)
    if found is not None and found[1] >= repeats:
        return found
    tokens = text.lower().split()
    last: dict[tuple[str, ...], int] = {}
    seen: dict[tuple[str, ...], int] = {}
    for i in range(len(tokens) - LOOP_SPAN + 1):
        gram = tuple(tokens[i:i + LOOP_SPAN])
        if gram in last and i - last[gram] < LOOP_SPAN:
            continue
        last[gram] = i
        seen[gram] = seen.get(gram, 0) + 1
        if seen[gram] >= repeats:
            return " ".join(gram), seen[gram]
    return None


def check_turn(text: str, finish_reason: str | None, role: str, earlier: Sequence[str],
               rules: TurnRules) -> Verdict:
    """Judge one new turn against the dialogue so far; the first failing rule decides.

    Order: cut by the length limit, empty, the role's own failure (a user turn that answers
    like the assistant: an assistant's opener or phrase; an assistant refusal), a line that
    opens with a speaker's label (the model wrote the other side too), a loop inside the
    turn (finish_reason "stop" does not rule one out), then a repeat of an earlier turn
    (score: the highest ROUGE-L to one).
    """
    if finish_reason == "length":
        return Verdict.drop(Reason.TURN_TRUNCATED, f"{role} turn stopped at max_tokens")
    if not text.strip():
        return Verdict.drop(Reason.EMPTY_TURN, f"empty {role} turn")
    if role == "user":
        opener = drift_opener(text, rules.drift_openers)
        if opener is not None:
            return Verdict.drop(Reason.ROLE_DRIFT, f"user turn opens with {opener!r}", 1.0)
        phrase = rules.drift_phrase(text)
        if phrase is not None:
            return Verdict.drop(Reason.ROLE_DRIFT, f"user turn says {phrase.lower()!r}", 1.0)
    else:
        refusal = rules.refusal(text)
        if refusal is not None:
            return Verdict.drop(Reason.REFUSAL, refusal.lower())
    label = rules.speaker_line(text)
    if label is not None:
        return Verdict.drop(Reason.SPEAKER_LABEL, f"{role} turn has a {label!r} line")
    loop = turn_loop(text, rules.loop_repeats)
    if loop is not None:
        passage, times = loop
        return Verdict.drop(Reason.TURN_LOOP, f"{role} turn repeats {passage[:60]!r} "
                            f"{times} times", float(times))
    best = max((rouge_l(text, other) for other in earlier), default=0.0)
    if best > rules.repeat_threshold:
        return Verdict.drop(Reason.REPEATED_TURN, f"{role} turn ROUGE-L {best:.3f} to an "
                            "earlier turn", best)
    return Verdict.ok(best)
