"""Self-Instruct's config section (`self_instruct:`); paper values unless a comment says so."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

from pipelines.settings import (
    RunSettings,
    SamplingConfig,
    check,
)
from pipelines.transforms.bootstrap_loop import LoopSettings


def _paper_instruction_sampling() -> SamplingConfig:
    # Paper: max_tokens 1024, T 0.7, top_p 0.5, presence 2, stop at "\n\n" and at item 16.
    # The item stops ("\n16", "16.", "16 .") are added per request from
    # num_prompt_instructions (self_instruct_steps.item_stops), so they follow the demo count.
    return SamplingConfig(1024, 0.7, 0.5, 2.0, 0.0, ("\n\n",))


def _paper_clf_sampling() -> SamplingConfig:
    return SamplingConfig(3, 0.0, 0.0, 0.0, 0.0, ("\n", "Task"))


def _paper_instance_sampling() -> SamplingConfig:
    # Paper: 350 tokens (300 for classification: clf_instance_max_tokens), greedy,
    # presence 1.5, stop at "Example 6" and "Task:".
    return SamplingConfig(350, 0.0, 0.0, 1.5, 0.0, ("Example 6", "Task:"))


@dataclass(frozen=True)
class SelfInstructConfig(LoopSettings):
    num_instructions: int = 100
    # The streaming bootstrap (pipelines/transforms/bootstrap_loop.py). `window` (ours): prompt
    # i's demos come from the pool after prompts < i - refresh_window were decided; the window
    # must be well above max_concurrency, or one slow answer holds the loop (answers are
    # decided in order); `batch` (the paper): the pool changes every prompts_per_round
    # prompts, so at most that many are in flight.
    refresh: Literal["window", "batch"] = "window"
    refresh_window: int = 128
    prompts_per_round: int = 5  # the paper's request_batch_size (the batch of refresh: batch)
    max_prompts: int | None = None  # prompt budget; None: 4 per wanted instruction
    # Stop once this many answered prompts in a row added nothing to the pool (a generator
    # that has run out of new instructions); null: only max_prompts stops it.
    stall_prompts: int | None = 1000
    lanes: int = 1  # independent loops (own seeds, own pool), e.g. one per GPU worker
    num_prompt_instructions: int = 8
    num_machine_demos: int = 2
    rouge_threshold: float = 0.7
    # True: rouge_l_max on kept rows is the exact maximum over the pool (O(pool) compiled LCS
    # per candidate). False: decisions stay exact but kept rows get a lower bound (faster at
    # 10K+ instructions; rejected rows always carry the exact maximum).
    exact_novelty_scores: bool = True
    min_words: int = 4
    max_words: int = 150
    capitalize: Literal["paper", "first_letter", "none"] = "first_letter"
    max_instances_per_task: int = 5
    instruction_sampling: SamplingConfig = field(default_factory=_paper_instruction_sampling)
    clf_sampling: SamplingConfig = field(default_factory=_paper_clf_sampling)
    instance_sampling: SamplingConfig = field(default_factory=_paper_instance_sampling)
    # instance_sampling's max_tokens for classification tasks (the paper: 300, others 350).
    clf_instance_max_tokens: int = 300

    def __post_init__(self) -> None:
        check(self.num_instructions >= 1, "num_instructions", "must be >= 1")
        check(self.clf_instance_max_tokens >= max(1, self.instance_sampling.min_tokens),
               "clf_instance_max_tokens", "must be >= 1 and >= instance_sampling.min_tokens")
        check(self.prompts_per_round >= 1, "prompts_per_round", "must be >= 1")
        check(self.refresh_window >= 0, "refresh_window", "must be >= 0")
        check(self.max_prompts is None or self.max_prompts >= 1, "max_prompts",
               "must be >= 1 (or null: 4 per wanted instruction)")
        check(self.stall_prompts is None or self.stall_prompts >= 1, "stall_prompts",
               "must be >= 1 (or null: never)")
        check(1 <= self.lanes <= self.num_instructions, "lanes",
               "must be >= 1 and <= num_instructions")
        check(0 <= self.num_machine_demos < self.num_prompt_instructions,
               "num_machine_demos", "must be >= 0 and < num_prompt_instructions")
        check(0.0 < self.rouge_threshold <= 1.0, "rouge_threshold", "must be in (0, 1]")
        check(1 <= self.min_words <= self.max_words, "min_words",
               "must be >= 1 and <= max_words")
        check(self.max_instances_per_task >= 1, "max_instances_per_task", "must be >= 1")


class SelfInstructRun(RunSettings, Protocol):
    """What this recipe reads of a run's config: the shared keys and its own section."""

    @property
    def self_instruct(self) -> SelfInstructConfig: ...
