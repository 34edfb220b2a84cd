"""ROUGE-L exactly as Google's ``rouge-score`` 0.1.2 computes it, with the LCS in compiled code.

Every generation code base we re-implement (Self-Instruct, Alpaca, Ensemble-Instruct,
Explore-Instruct) calls ``rouge_score``; its tokenizer and its floating-point F-measure are part
of the algorithm. Thresholds are applied as ``score > 0.7``, so we must reproduce the *float*
``rouge-score`` returns, not an algebraically equal formula: for (lcs, la, lb) = (7, 7, 13) its
``2*P*R/(P+R)`` is 0.7000000000000001 (rejected), while ``2*lcs/(la+lb)`` is 0.7 (kept).

The LCS itself is computed by ``rapidfuzz`` (C++, bit-parallel). Tokens are first mapped to
distinct code points so the comparison is exact (no reliance on hashing of Python objects).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from nltk.stem import porter
from rapidfuzz.distance import LCSseq

__all__ = [
    "MAX_CODE_IDS",
    "encode_tokens",
    "lcs_length",
    "rouge_l",
    "rouge_l_f",
    "rouge_l_from_counts",
    "tokenize",
]

# The same three patterns as rouge_score/tokenize.py.
_NON_ALPHANUM_RE = re.compile(r"[^a-z0-9]+")
_SPACES_RE = re.compile(r"\s+")
_VALID_TOKEN_RE = re.compile(r"^[a-z0-9]+$")

# Token ids become code points (lone surrogates included: rapidfuzz compares code units).
MAX_CODE_IDS = 0x110000


_STEMMER: Any = None


def _stemmer() -> Any:
    """The Porter stemmer rouge-score uses (``nltk.stem.porter.PorterStemmer()``), built once."""
    global _STEMMER
    if _STEMMER is None:
        _STEMMER = porter.PorterStemmer()
    return _STEMMER


@lru_cache(maxsize=1 << 16)
def _stem(word: str) -> str:
    return str(_stemmer().stem(word))


@lru_cache(maxsize=1 << 16)
def tokenize(text: str, stem: bool = False) -> tuple[str, ...]:
    """Tokens exactly as ``rouge_score.tokenize.tokenize`` returns them (as a tuple).

    Lowercase with ``str.lower`` (so a few non-ASCII letters such as the Kelvin sign do become
    ASCII), replace every run of non-``[a-z0-9]`` characters by a space, split on whitespace,
    optionally Porter-stem tokens longer than 3 characters, keep only ``^[a-z0-9]+$`` tokens.
    Text with no ASCII letters or digits (Chinese, emoji, punctuation) yields ``()``.
    """
    text = _NON_ALPHANUM_RE.sub(" ", text.lower())
    tokens = _SPACES_RE.split(text)
    if stem:
        tokens = [_stem(t) if len(t) > 3 else t for t in tokens]
    return tuple(t for t in tokens if _VALID_TOKEN_RE.match(t))


def encode_tokens(tokens: Sequence[str], vocab: dict[str, int]) -> str:
    """Map tokens to one character each (extending ``vocab``), so ``rapidfuzz`` compares exactly.

    Raises ``OverflowError`` once the vocabulary no longer fits in the code-point space.
    """
    ids = [vocab.setdefault(t, len(vocab)) for t in tokens]
    if len(vocab) > MAX_CODE_IDS:
        raise OverflowError("vocabulary larger than the code-point space")
    return "".join(map(chr, ids))


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence of two token sequences (compiled code)."""
    if not a or not b:
        return 0
    vocab: dict[str, int] = {}
    try:
        return int(LCSseq.similarity(encode_tokens(a, vocab), encode_tokens(b, vocab)))
    except OverflowError:  # > 1.1M distinct tokens: fall back to small ints (hash(i) == i)
        ids: dict[str, int] = {}
        ia = [ids.setdefault(t, len(ids)) for t in a]
        ib = [ids.setdefault(t, len(ids)) for t in b]
        return int(LCSseq.similarity(ia, ib))


def rouge_l_from_counts(lcs: int, len_a: int, len_b: int) -> float:
    """rouge-score's F-measure from (LCS, target length, prediction length), same float ops.

    ``rouge_scorer._score_lcs(target=a, prediction=b)``: precision = lcs/len(b), recall =
    lcs/len(a), then ``scoring.fmeasure``: ``2 * precision * recall / (precision + recall)``.
    The value is symmetric in (a, b) bit for bit (``2*p`` is exact and ``*``/``+`` commute).
    """
    if len_a == 0 or len_b == 0:
        return 0.0
    precision = lcs / len_b
    recall = lcs / len_a
    if precision + recall > 0:
        return 2 * precision * recall / (precision + recall)
    return 0.0


def rouge_l_f(a_tokens: Sequence[str], b_tokens: Sequence[str]) -> float:
    """ROUGE-L F-measure of two token sequences; 0.0 when either is empty."""
    if not a_tokens or not b_tokens:
        return 0.0
    return rouge_l_from_counts(lcs_length(a_tokens, b_tokens), len(a_tokens), len(b_tokens))


def rouge_l(a: str, b: str, stem: bool = False) -> float:
    """``RougeScorer(["rougeL"], use_stemmer=stem).score(a, b)["rougeL"].fmeasure``, faster."""
    return rouge_l_f(tokenize(a, stem), tokenize(b, stem))
