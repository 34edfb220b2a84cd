"""Cheap text statistics of one row, as named scores: measured here, thresholded elsewhere.

Each statistic is a plain function of the row's text that costs microseconds, so a user can
look at the distribution in the output (`scores`) and then put a `ScoreFilter` on it, the
same way as on a model's score. None of them decides anything by itself.

* `output_prompt_ratio`: characters of the output per character of instruction + input. A
  reply far shorter than its request is often cut off or evasive; far longer can be rambling.
* `repeated_ngram_share`: the share of the output's word n-grams (n = 3) that repeat an
  earlier n-gram of the same output: how much of it is a loop (Gopher's "duplicate n-gram
  fraction" idea, on words, simplified to one n).
* `non_ascii_share`: non-ASCII characters among the row's non-space characters (a language or
  encoding signal, e.g. for an English-only dataset).
* `unfinished_sentence`: 1.0 when an output of several words stops where no sentence, list
  item, quote, bracket or code block ends (a truncated answer), else 0.0. Endings that finish
  an answer without punctuation count as finished: a number ("... is 42", "version 3.11.2"),
  a URL, a Markdown table row ("| Ann | 31 |"), an emoji, and an indented code block.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from typing import Final

OUTPUT_PROMPT_RATIO: Final = "output_prompt_ratio"
REPEATED_NGRAM_SHARE: Final = "repeated_ngram_share"
NON_ASCII_SHARE: Final = "non_ascii_share"
UNFINISHED_SENTENCE: Final = "unfinished_sentence"
TEXT_STATS: Final = (OUTPUT_PROMPT_RATIO, REPEATED_NGRAM_SHARE, NON_ASCII_SHARE,
                     UNFINISHED_SENTENCE)

NGRAM: Final = 3
# An answer this short ("Positive", "42", "Paris") is complete without a full stop.
MIN_WORDS_FOR_SENTENCE: Final = 5
# What may end a finished answer: sentence ends (Latin and CJK), closing quotes and brackets,
# Markdown emphasis, and the end of a code block or inline code.
_FINISHED_ENDINGS: Final = frozenset('.!?…:;"\')]}>*`’”»。！？）」』')
_WORD = re.compile(r"\w+", re.UNICODE)
# A last token that ends an answer without punctuation: a number (42, 3.11.2, 1,000, 15%,
# 10:30, 1/2) or a URL.
_NUMBER_END = re.compile(r"(?:^|\s)[-+$€£(]?\d[\d.,:/%]*\Z")
_URL_END = re.compile(r"(?:^|\s)<?(?:https?://|www\.)\S+\Z", re.I)
# What follows an emoji's base character without being one: variation selectors, the zero
# width joiner, skin tones, tag characters.
_EMOJI_TAIL = re.compile("[\ufe0e\ufe0f\u200d\U0001F3FB-\U0001F3FF\U000E0020-\U000E007F]+\\Z")


def output_prompt_ratio(instruction: str, input_text: str, output: str) -> float:
    """len(output) / len(instruction + input), stripped characters; 0 prompt chars count as 1."""
    prompt_chars = len(instruction.strip()) + len(input_text.strip())
    return len(output.strip()) / max(prompt_chars, 1)


def repeated_ngram_share(text: str, n: int = NGRAM) -> float:
    """Share of the word n-grams (lowercased) that already occurred earlier in `text`."""
    words = [w.lower() for w in _WORD.findall(text)]
    grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
    if not grams:
        return 0.0
    return (len(grams) - len(set(grams))) / len(grams)


def non_ascii_share(*texts: str) -> float:
    """Non-ASCII characters among all non-whitespace characters of `texts` (0 if none)."""
    chars = [c for text in texts for c in text if not c.isspace()]
    if not chars:
        return 0.0
    return sum(1 for c in chars if ord(c) > 127) / len(chars)


def unfinished_sentence(text: str) -> float:
    """1.0 if an output of >= MIN_WORDS_FOR_SENTENCE words ends mid-sentence, else 0.0.

    An empty output is unfinished; a short one (a label, a number) is not judged.
    """
    stripped = text.rstrip()
    if not stripped:
        return 1.0
    if len(_WORD.findall(stripped)) < MIN_WORDS_FOR_SENTENCE:
        return 0.0
    return 0.0 if _finished(stripped) else 1.0


def _finished(stripped: str) -> bool:
    """Whether `stripped` (no trailing whitespace) ends where an answer may end."""
    if stripped[-1] in _FINISHED_ENDINGS:
        return True
    if _NUMBER_END.search(stripped) or _URL_END.search(stripped):
        return True
    last_line = stripped.rsplit("\n", 1)[-1]
    if last_line.lstrip().startswith("|") and last_line.endswith("|"):  # a table row
        return True
    if _indented_code(stripped):
        return True
    base = _EMOJI_TAIL.sub("", stripped)
    return bool(base) and unicodedata.category(base[-1]) == "So"  # an emoji or symbol


def _indented_code(stripped: str) -> bool:
    """The text ends in a Markdown indented code block: its last lines are indented by four
    spaces or a tab, after a blank line."""
    lines = stripped.split("\n")
    i = len(lines) - 1
    while i > 0 and (lines[i].startswith(("    ", "\t")) or not lines[i].strip()):
        i -= 1
    return i < len(lines) - 1 and i >= 0 and not lines[i + 1].strip()


def text_stats(instruction: str, input_text: str, output: str) -> Sequence[tuple[str, float]]:
    """Every statistic of one row, named, in TEXT_STATS order."""
    return (
        (OUTPUT_PROMPT_RATIO, output_prompt_ratio(instruction, input_text, output)),
        (REPEATED_NGRAM_SHARE, repeated_ngram_share(output)),
        (NON_ASCII_SHARE, non_ascii_share(instruction, input_text, output)),
        (UNFINISHED_SENTENCE, unfinished_sentence(output)),
    )
