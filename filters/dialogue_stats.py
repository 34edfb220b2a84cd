"""Statistics of multi-turn dialogues, as the UltraChat paper reports them for its data.

Per dialogue: rounds, turns, words per user and assistant turn and lexical diversity (MTLD);
over a dataset: the sums, so a Beam combiner adds them up without holding the texts, and
distinct-n from the distinct n-grams. Pure functions; no Beam.

Sources: MTLD is McCarthy & Jarvis (2010), "MTLD, vocd-D, and HD-D" (factor threshold 0.72,
the mean of a forward and a backward pass, the last partial factor counted by its share);
distinct-n is Li et al. (2016), "A Diversity-Promoting Objective Function for Neural
Conversation Models" (distinct n-grams / all n-grams).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from typing import NamedTuple

from schemas import Message

MTLD_THRESHOLD = 0.72
# Scripts written without spaces between words (Han, Hiragana, Katakana): one token per
# character, the usual unit when no segmenter is at hand. Every other letter or digit of any
# script joins its neighbours into a word, with an inner apostrophe ("don't").
_UNSPACED = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_LETTER = rf"(?:(?![{_UNSPACED}])[^\W_])"
_ALPHA = rf"(?:(?![{_UNSPACED}])[^\W\d_])"
_WORD = re.compile(rf"[{_UNSPACED}]|{_LETTER}+(?:'{_ALPHA}+)?")


def words(text: str) -> list[str]:
    """Lower-cased word tokens of any script: runs of letters and digits (with an inner
    apostrophe), one token per character of a script written without spaces.

    NFC first, so "nai\u0308ve" (a combining diaeresis) is the same word as "naïve". On
    ASCII English this gives the tokens of the usual `[a-z0-9]+('[a-z]+)?` tokenizer, so
    MTLD and distinct-n there are unchanged.
    """
    return _WORD.findall(unicodedata.normalize("NFC", text).lower())


def ngrams(tokens: Sequence[str], n: int) -> Iterator[tuple[str, ...]]:
    return (tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def _factors(tokens: Iterable[str], threshold: float) -> float:
    factors, seen, count = 0.0, set(), 0
    for token in tokens:
        count += 1
        seen.add(token)
        if len(seen) / count <= threshold:
            factors += 1
            seen, count = set(), 0
    if count:
        factors += (1 - len(seen) / count) / (1 - threshold)
    return factors


def mtld(tokens: Sequence[str], threshold: float = MTLD_THRESHOLD) -> float:
    """Measure of textual lexical diversity: mean words per factor (higher is more diverse).

    A text whose type-token ratio never falls to the threshold has no complete factor; its
    share of one then measures it, and a text with no factor at all scores its length. An
    empty text scores 0.
    """
    if not tokens:
        return 0.0
    scores = []
    for ordered in (tokens, tokens[::-1]):
        factors = _factors(ordered, threshold)
        scores.append(len(tokens) / factors if factors else float(len(tokens)))
    return sum(scores) / 2


class DialogueNumbers(NamedTuple):
    """Sums over dialogues (one dialogue: its own numbers); `add` merges two."""

    dialogues: int = 0
    rounds: int = 0
    turns: int = 0
    user_turns: int = 0
    user_words: int = 0
    assistant_turns: int = 0
    assistant_words: int = 0
    mtld_sum: float = 0.0

    def add(self, other: DialogueNumbers) -> DialogueNumbers:
        return DialogueNumbers(*(a + b for a, b in zip(self, other, strict=True)))


def dialogue_numbers(messages: Sequence[Message], rounds: int) -> DialogueNumbers:
    """One dialogue's numbers; MTLD over all its turns' words in order."""
    user = [len(words(m.content)) for m in messages if m.role == "user"]
    assistant = [len(words(m.content)) for m in messages if m.role == "assistant"]
    tokens = [t for m in messages for t in words(m.content)]
    return DialogueNumbers(1, rounds, len(messages), len(user), sum(user), len(assistant),
                           sum(assistant), mtld(tokens))


def summarize(total: DialogueNumbers, distinct: dict[int, tuple[int, int]]) -> dict[str, float]:
    """The dataset's figures: means per dialogue and per turn, mean MTLD, distinct-n.

    `distinct` maps n to (distinct n-grams, all n-grams) over every turn of every dialogue.
    """
    def ratio(a: float, b: float) -> float:
        return round(a / b, 4) if b else 0.0

    out = {
        "dialogues": total.dialogues,
        "rounds_per_dialogue": ratio(total.rounds, total.dialogues),
        "turns_per_dialogue": ratio(total.turns, total.dialogues),
        "user_turn_words": ratio(total.user_words, total.user_turns),
        "assistant_turn_words": ratio(total.assistant_words, total.assistant_turns),
        "mtld": ratio(total.mtld_sum, total.dialogues),
    }
    for n, (unique, every) in sorted(distinct.items()):
        out[f"distinct_{n}"] = ratio(unique, every)
    return out


def topic_diversity(vector_sum: Sequence[float], count: int) -> float | None:
    """Mean pairwise cosine distance of `count` unit-length embeddings, from their sum.

    For unit vectors, sum over all ordered pairs i != j of e_i . e_j = |sum e|^2 - n, so the
    mean cosine similarity over pairs needs only the sum and the count: a combiner adds them
    without holding the embeddings. The UltraChat paper reports topic diversity of its
    opening lines this way (average cosine distance between embeddings). None below 2 texts.
    """
    if count < 2:
        return None
    squared = sum(v * v for v in vector_sum)
    similarity = (squared - count) / (count * (count - 1))
    return round(1.0 - similarity, 4)
