"""The project's one Porter stemmer: NLTK's default ``PorterStemmer()``, built once per process.

rouge-score stems with exactly this object (``nltk.stem.porter.PorterStemmer()``), and #InsTag's
rule aggregation is specified as NLTK's Porter stemming; one cached instance serves both, so the
two cannot drift apart (a different mode would change ROUGE scores and tag merges alike).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from nltk.stem import porter  # a dependency of rouge-score, always installed

__all__ = ["porter_stem"]


@lru_cache(maxsize=1)
def _stemmer() -> Any:
    return porter.PorterStemmer()


@lru_cache(maxsize=1 << 16)
def porter_stem(word: str) -> str:
    """``PorterStemmer().stem(word)`` (lower-cases too, NLTK's default), memoized."""
    return str(_stemmer().stem(word))
