"""#InsTag's config section (`instag:`); paper values unless noted."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

from pipelines.settings import (
    RunSettings,
    SamplingConfig,
    check,
)


def _instag_tag_sampling() -> SamplingConfig:
    # The paper tagged with ChatGPT (settings unpublished); greedy keeps tags reproducible.
    return SamplingConfig(max_tokens=1024, temperature=0.0, top_p=1.0)


@dataclass(frozen=True)
class InsTagConfig:
    """#InsTag (reference/seed-algorithms.md §4): tag, normalize, Cf-D sample; paper constants.

    Thresholds `min_tag_count` (α) and `min_support` are counts when >= 1 and fractions of
    the pool (the tagged queries) when < 1, so a small pool keeps a meaningful vocabulary.
    """

    sample_size: int | None = 6000  # N; None: tag and normalize only (every query kept)
    api: Literal["chat", "completions"] = "chat"
    structured_output: bool = True  # vLLM JSON-schema decoding; needs the server flag
    max_tags: int = 10  # the schema's maxItems, per user turn
    max_tag_chars: int = 50  # the schema's maxLength of a tag
    max_explanation_chars: int = 200
    tag_sampling: SamplingConfig = field(default_factory=_instag_tag_sampling)
    min_tag_count: float = 20.0  # step 1, α
    rule_aggregation: bool = True  # step 2
    stem: bool = True
    semantic_aggregation: bool = True  # step 3
    embedding_model: Literal["all-minilm-l6-v2", "char-trigram"] = "all-minilm-l6-v2"
    semantic_eps: float = 0.05  # DBSCAN eps, cosine distance
    semantic_min_samples: int = 1
    association_aggregation: bool = True  # step 4
    min_support: float = 40.0
    min_confidence: float = 0.99
    top_tags: int = 20  # most frequent tags in the report

    def __post_init__(self) -> None:
        check(self.sample_size is None or self.sample_size >= 1, "sample_size",
               "must be >= 1 (or null: no sampling)")
        check(self.max_tags >= 1, "max_tags", "must be >= 1")
        check(self.max_tag_chars >= 1, "max_tag_chars", "must be >= 1")
        check(self.max_explanation_chars >= 0, "max_explanation_chars", "must be >= 0")
        check(self.min_tag_count >= 0, "min_tag_count", "must be >= 0")
        check(self.min_support > 0, "min_support", "must be > 0")
        check(0.0 < self.min_confidence <= 1.0, "min_confidence", "must be in (0, 1]")
        check(0.0 < self.semantic_eps < 1.0, "semantic_eps", "must be in (0, 1)")
        check(self.semantic_min_samples >= 1, "semantic_min_samples", "must be >= 1")
        check(self.top_tags >= 0, "top_tags", "must be >= 0")


class InsTagRun(RunSettings, Protocol):
    """What this recipe reads of a run's config: the shared keys and its own section."""

    @property
    def instag(self) -> InsTagConfig: ...
