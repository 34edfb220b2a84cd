"""Ensemble-Instruct's config section (`ensemble_instruct:`); paper values unless noted."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal, Protocol

from pipelines.settings import (
    GeneratorConfig,
    RunSettings,
    SamplingConfig,
    check,
)
from pipelines.transforms.bootstrap_loop import LoopSettings


def _ensemble_instruction_sampling() -> SamplingConfig:
    # Paper code (BAM): sample T 0.7 top_k 50 top_p 1, max 256, min 15 new tokens, stop |EoS|.
    return SamplingConfig(256, 0.7, 1.0, 0.0, 0.0, ("|EoS|",), min_tokens=15)


def _ensemble_instance_sampling() -> SamplingConfig:
    # Paper code: sample, max 512, min 50 new tokens, stop at a blank line or |EoS|.
    return SamplingConfig(512, 0.7, 1.0, 0.0, 0.0, ("\n\n", "|EoS|"), min_tokens=50)


def _ensemble_extra_sampling() -> SamplingConfig:
    # Paper code (gen_output_zeroshot.py): greedy, max 256, min 1 new token.
    return SamplingConfig(256, 0.0, 0.0, 0.0, 0.0, ("\n\n", "|EoS|"), min_tokens=1)


@dataclass(frozen=True)
class EnsembleTasksConfig(LoopSettings):
    """Instruction generation for one task type; these defaults are type A's (needs an input).

    `num_instructions: 0` skips the type. The type's streaming bootstrap stops once
    `num_instructions` are accepted (or `max_prompts` were sent); `refresh`, `refresh_window`,
    `prompts_per_round` and `lanes` as in Self-Instruct (pipelines/transforms/bootstrap_loop.py).
    """

    num_instructions: int = 100
    refresh: Literal["window", "batch"] = "window"
    refresh_window: int = 128
    prompts_per_round: int = 5  # the paper's request batch (the batch of refresh: batch)
    max_prompts: int | None = None  # None: 4 per wanted instruction
    # Stop once this many answered prompts in a row added nothing to the pool (a generator
    # that has run out of new instructions); null: only max_prompts stops it.
    stall_prompts: int | None = 1000
    lanes: int = 1
    num_prompt_instructions: int = 24  # 20 seed + 4 machine once 4 exist (paper and code)
    num_machine_demos: int = 4

    def __post_init__(self) -> None:
        check(self.num_instructions >= 0, "num_instructions", "must be >= 0 (0 skips the type)")
        check(self.prompts_per_round >= 1, "prompts_per_round", "must be >= 1")
        check(self.refresh_window >= 0, "refresh_window", "must be >= 0")
        check(self.max_prompts is None or self.max_prompts >= 1, "max_prompts",
               "must be >= 1 (or null: 4 per wanted instruction)")
        check(self.stall_prompts is None or self.stall_prompts >= 1, "stall_prompts",
               "must be >= 1 (or null: never)")
        check(1 <= self.lanes <= max(1, self.num_instructions), "lanes",
               "must be >= 1 and <= num_instructions")
        check(0 <= self.num_machine_demos < self.num_prompt_instructions,
               "num_machine_demos", "must be >= 0 and < num_prompt_instructions")


@dataclass(frozen=True)
class EnsembleOutputOnlyTasksConfig(EnsembleTasksConfig):
    """Type B (no input): 10 demos. The paper says 8 seed + 2 machine (our default); the
    released code draws 4 machine demos for both types (6 + 4): `num_machine_demos: 4`."""

    num_prompt_instructions: int = 10
    num_machine_demos: int = 2


@dataclass(frozen=True)
class ExtraGeneratorConfig:
    """One more model that answers every instance, as its own generator (server, identity).

    Two entries may name the same model with different sampling (e.g. the generator's own
    model, greedy): equal `generator` settings share one server. `prompt`: `zero_shot` is the
    paper code's `instruction + "\\n" + input`; `few_shot` adds demos, as the paper does for
    models that are not instruction tuned. `api: chat` sends the prompt as a user message.
    """

    name: str
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    sampling: SamplingConfig = field(default_factory=_ensemble_extra_sampling)
    prompt: Literal["zero_shot", "few_shot"] = "zero_shot"
    api: Literal["completions", "chat"] = "completions"

    def __post_init__(self) -> None:
        check(bool(re.fullmatch(r"[a-z0-9][a-z0-9_.-]{0,39}", self.name)), "name",
               f"must be 1-40 of [a-z0-9_.-] starting with a letter or digit, got {self.name!r}")


@dataclass(frozen=True)
class EnsembleInstructConfig:
    """Ensemble-Instruct (reference/seed-algorithms.md §2); paper values unless noted."""

    type_a: EnsembleTasksConfig = field(default_factory=EnsembleTasksConfig)
    type_b: EnsembleOutputOnlyTasksConfig = field(default_factory=EnsembleOutputOnlyTasksConfig)
    rouge_threshold: float = 0.7
    exact_novelty_scores: bool = True
    min_words: int = 4
    max_words: int = 150
    # The demos' end marker and stop string (" |EoS|" as in the paper; "" for a plain list).
    end_marker: str = " |EoS|"
    # True: keep the stop string on machine instructions as the paper's API did (pool, demos
    # and instance prompts then carry " |EoS|"); False (ours): clean text.
    eos_suffix: bool = False
    single_line: bool = True  # the paper's parser keeps the first line of input and output
    # Extra models agree, generator differs: keep the agreed output (code since c65b4c5, our
    # default) or the generator's (earlier code; the released sample file).
    agree_rule: Literal["agreed_output", "generator_output"] = "agreed_output"
    min_pairwise_rouge: float = 0.01  # drop when the least similar pair is <= this
    # Ours: reject an ensembled output that repeats its input or a piece of its instruction
    # (`input_equals_output`, `output_echoes_instruction`); the paper keeps what the models
    # agree on (false).
    reject_echoes: bool = True
    instruction_sampling: SamplingConfig = field(default_factory=_ensemble_instruction_sampling)
    instance_sampling: SamplingConfig = field(default_factory=_ensemble_instance_sampling)
    extra_generators: tuple[ExtraGeneratorConfig, ...] = ()

    def __post_init__(self) -> None:
        check(0.0 < self.rouge_threshold <= 1.0, "rouge_threshold", "must be in (0, 1]")
        check(1 <= self.min_words <= self.max_words, "min_words",
               "must be >= 1 and <= max_words")
        check(0.0 <= self.min_pairwise_rouge < 1.0, "min_pairwise_rouge", "must be in [0, 1)")
        check(not self.eos_suffix or self.end_marker == " |EoS|", "eos_suffix",
               "reproduces the paper's ' |EoS|' marker; it needs end_marker ' |EoS|'")
        names = [x.name for x in self.extra_generators]
        check(len(set(names)) == len(names), "extra_generators", "names must be unique")


class EnsembleInstructRun(RunSettings, Protocol):
    """What this recipe reads of a run's config: the shared keys and its own section."""

    @property
    def ensemble_instruct(self) -> EnsembleInstructConfig: ...
