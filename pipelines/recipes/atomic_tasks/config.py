"""The atomic-task recipe's config section (`atomic_tasks:`); EcomGPT's three constructions."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

from pipelines.settings import RunSettings, SamplingConfig, check
from pipelines.transforms.atomic_tasks import simplify_sampling

TransformName = Literal["reversal", "simplification", "recombination"]


@dataclass(frozen=True)
class ReversalConfig:
    """Which rows reverse (filters/atomic_tasks.py `judge_reversal` says why each rule)."""

    min_output_words: int = 8
    max_request_words: int = 64  # rows without input: longer requests are not reversed
    min_length_ratio: float = 0.5  # rows with input: output words / input words

    def __post_init__(self) -> None:
        check(self.min_output_words >= 1, "min_output_words", "must be >= 1")
        check(self.max_request_words >= 1, "max_request_words", "must be >= 1")
        check(self.min_length_ratio >= 0.0, "min_length_ratio", "must be >= 0")


@dataclass(frozen=True)
class SimplificationConfig:
    """Which rows go to the generator to be split, and how its answer is asked for."""

    select: Literal["rule", "all"] = "rule"  # rule: only rows count_parts finds multi-part
    min_parts: int = 2
    max_source_chars: int = 3000  # request + input + output; longer rows are not sent
    max_subtasks: int = 4
    max_subtask_chars: int = 600  # the JSON schema's maxLength per field
    grounded: bool = True  # a sub-task's answer must be a passage of the source answer
    # grounded: share of a sub-task request's content words found in the source request
    min_request_overlap: float = 0.5
    api: Literal["chat", "completions"] = "chat"
    structured_output: bool = True  # vLLM JSON-schema decoding; needs the server flag
    sampling: SamplingConfig = field(default_factory=simplify_sampling)

    def __post_init__(self) -> None:
        check(self.min_parts >= 2, "min_parts", "must be >= 2")
        check(self.max_source_chars >= 1, "max_source_chars", "must be >= 1")
        check(2 <= self.max_subtasks <= 16, "max_subtasks", "must be in [2, 16]")
        check(self.max_subtask_chars >= 1, "max_subtask_chars", "must be >= 1")
        check(0.0 <= self.min_request_overlap <= 1.0, "min_request_overlap", "must be in [0, 1]")


@dataclass(frozen=True)
class RecombinationConfig:
    """Multiple choice: a row's request with its answer among answers of other rows."""

    options: int = 4  # answers shown, the right one included
    group_size: int = 64  # rows per seeded group that distractors are drawn from
    max_option_chars: int = 400  # longer answers are neither asked about nor shown
    # candidates with ROUGE-L F above this to the right answer are never distractors
    max_distractor_rouge_l: float = 0.7

    def __post_init__(self) -> None:
        check(2 <= self.options <= 10, "options", "must be in [2, 10]")
        check(self.group_size >= self.options, "group_size", "must be >= options")
        check(self.max_option_chars >= 1, "max_option_chars", "must be >= 1")
        check(0.0 <= self.max_distractor_rouge_l <= 1.0, "max_distractor_rouge_l",
              "must be in [0, 1]")


@dataclass(frozen=True)
class AtomicTasksConfig:
    """EcomGPT's atomic tasks (reversal, simplification, recombination) from any dataset.

    Each listed transform reads every input row; their derived rows (plus the source rows
    with `keep_source`) then go through the shared filter chain.
    """

    transforms: tuple[TransformName, ...] = ("reversal", "simplification", "recombination")
    keep_source: bool = False  # the paper trains on both; here the source rows are opt-in
    reversal: ReversalConfig = field(default_factory=ReversalConfig)
    simplification: SimplificationConfig = field(default_factory=SimplificationConfig)
    recombination: RecombinationConfig = field(default_factory=RecombinationConfig)

    def __post_init__(self) -> None:
        check(bool(self.transforms), "transforms", "must list at least one transform")
        check(len(set(self.transforms)) == len(self.transforms), "transforms",
              "lists a transform twice")


class AtomicTasksRun(RunSettings, Protocol):
    """What this recipe reads of a run's config: the shared keys and its own section."""

    @property
    def atomic_tasks(self) -> AtomicTasksConfig: ...
