"""One Porter stemmer for the project: stemmed ROUGE (rouge-score's) and #InsTag's rule
aggregation both go through ``filters.stemming.porter_stem``."""

from __future__ import annotations

from pathlib import Path

from nltk.stem.porter import PorterStemmer

import filters
from filters.instag import rule_key
from filters.rouge import tokenize
from filters.stemming import porter_stem

WORDS = "generating codes running flies happily generalizations naïve straße Œuvre".split()


def test_porter_stem_is_nltks_default_stemmer():
    fresh = PorterStemmer()
    for word in WORDS:
        assert porter_stem(word) == fresh.stem(word)


def test_rouge_and_instag_stem_through_it():
    porter_stem.cache_clear()
    tokenize.cache_clear()
    assert tokenize("quietly running", stem=True) == ("quietli", "run")
    assert porter_stem.cache_info().misses == 2
    assert rule_key("Generating Codes") == "gener code"
    assert porter_stem.cache_info().misses == 4


def test_only_one_module_builds_a_stemmer():
    root = Path(filters.__file__).parent
    builders = sorted(p.name for p in root.glob("*.py") if "PorterStemmer(" in p.read_text())
    assert builders == ["stemming.py"]
