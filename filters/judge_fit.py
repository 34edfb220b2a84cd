"""Fitting the judge's prompt to the model's context: count tokens, elide, and say so.

Why: the judge's rubric gives an unfinished answer 1, so a field cut at a fixed number of
characters with a bare " [...]" made long answers look unfinished, a penalty for our cut, not
for the answer. Here the fields are cut only when the whole prompt would not fit the model's
context, by the tokens that do not fit; a cut field keeps its beginning *and its end* (so the
judge still sees whether the answer finishes), and the gap carries a note telling the judge
that the pipeline left text out there and that this is not a flaw of the text.

Tokens are *estimated*, as an upper bound for the usual BPE vocabularies (Llama, Qwen,
SmolLM2), not counted with the served model's tokenizer: the judge's requests are built in a
plain Beam Map that has no tokenizer, and an over-estimate only cuts a little early, while
an under-estimate would fail the request. The estimate counts a short word as one token, a
longer word one per 3 characters, each punctuation mark one, each non-ASCII character two.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Final

_PIECE = re.compile(r"[A-Za-z0-9_]+|[^\sA-Za-z0-9_]|\n")
# Tokens the chat template adds around one user message (roles, special tokens), and a
# margin for the estimate; both are small next to any context worth judging in.
CHAT_OVERHEAD_TOKENS: Final = 48
MIN_FIELD_TOKENS: Final = 32  # a field is never cut below this, whatever the budget
ELISION_NOTE: Final = ("\n[... about {n} tokens of this text left out here by the data "
                       "pipeline to fit your context; this is not a flaw of the text, judge "
                       "the rest ...]\n")


def _piece_tokens(piece: str) -> int:
    if piece.isascii():
        return max(1, math.ceil(len(piece) / 3)) if piece[0].isalnum() or piece[0] == "_" \
            else 1
    return 2 * len(piece)


def estimate_tokens(text: str) -> int:
    """An upper-bound estimate of the tokens `text` takes (see the module docstring)."""
    return sum(_piece_tokens(p) for p in _PIECE.findall(text))


def _offset_after(text: str, tokens: int) -> int:
    """The character offset where the first `tokens` estimated tokens of `text` end."""
    used = 0
    end = 0
    for match in _PIECE.finditer(text):
        used += _piece_tokens(match.group())
        if used > tokens:
            break
        end = match.end()
    return end


def _offset_before(text: str, tokens: int) -> int:
    """The character offset where the last `tokens` estimated tokens of `text` begin."""
    used = 0
    start = len(text)
    for match in reversed(list(_PIECE.finditer(text))):
        used += _piece_tokens(match.group())
        if used > tokens:
            break
        start = match.start()
    return start


def elide(text: str, keep_tokens: int) -> str:
    """`text` cut to about `keep_tokens` tokens: its first two thirds and last third kept,
    the gap marked with ELISION_NOTE (counted in `keep_tokens`). Unchanged if it fits."""
    total = estimate_tokens(text)
    if total <= keep_tokens:
        return text
    note_tokens = estimate_tokens(ELISION_NOTE.format(n=total))
    room = max(keep_tokens - note_tokens, 2)
    head = text[:_offset_after(text, room * 2 // 3)].rstrip()
    tail = text[_offset_before(text, room - room * 2 // 3):].lstrip()
    left_out = max(total - estimate_tokens(head) - estimate_tokens(tail), 1)
    return head + ELISION_NOTE.format(n=left_out) + tail


def fit_fields(fields: Mapping[str, str], budget: int) -> tuple[dict[str, str], bool]:
    """`fields` fitted into `budget` estimated tokens in all, and whether any was cut.

    Fair shares (water-filling): fields smaller than an equal share of what is left stay
    whole, the larger ones share the rest equally; no field is cut below MIN_FIELD_TOKENS.
    """
    sizes = {name: estimate_tokens(text) for name, text in fields.items()}
    if sum(sizes.values()) <= budget:
        return dict(fields), False
    allotted: dict[str, int] = {}
    remaining = budget
    order = sorted(sizes, key=lambda name: sizes[name])
    for i, name in enumerate(order):
        share = remaining // (len(order) - i)
        allotted[name] = sizes[name] if sizes[name] <= share else max(share, MIN_FIELD_TOKENS)
        remaining -= min(sizes[name], share)
    fitted = {name: elide(text, allotted[name]) for name, text in fields.items()}
    return fitted, any(fitted[name] != fields[name] for name in fields)
