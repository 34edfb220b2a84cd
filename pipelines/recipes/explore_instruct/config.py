"""Explore-Instruct's config section (`explore_instruct:`); paper values unless noted."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

from pipelines.settings import (
    RunSettings,
    SamplingConfig,
    check,
)


@dataclass(frozen=True)
class ExploreExampleConfig:
    instruction: str
    input: str = ""
    output: str = ""


@dataclass(frozen=True)
class ExploreSubtaskConfig:
    """A first-level subtask given by the user (the paper's seed children of the root)."""

    name: str
    reason: str = ""
    examples: tuple[ExploreExampleConfig, ...] = ()


def _paper_explore_sampling() -> SamplingConfig:
    # Paper: gpt-3.5-turbo, T 1.0, top_p 1.0, max_tokens = what is left of a 4096 context.
    return SamplingConfig(2048, 1.0, 1.0)


@dataclass(frozen=True)
class ExploreInstructConfig:
    """Explore-Instruct (reference/seed-algorithms.md §3); paper constants unless noted.

    The domain is a root task (or a tree in the paper's format, `tree_dir`); `extend_nums[d]`
    new children are sought for every node of depth d < max_depth, `enrich_nums[d]` examples
    for every node of depth d (root = depth 0).
    """

    domain: Literal["rewrite", "brainstorming", "math"] = "rewrite"  # prompts and rules
    root_task: str = ""
    root_description: str = ""  # the root's `reason`
    root_examples: tuple[ExploreExampleConfig, ...] = ()
    subtasks: tuple[ExploreSubtaskConfig, ...] = ()
    tree_dir: str | None = None  # start from a tree in the paper's format instead
    max_depth: int = 2
    extend_nums: tuple[int, ...] = ()  # one per depth < max_depth; empty: 5 each (paper)
    enrich_nums: tuple[int, ...] = ()  # one per depth <= max_depth; empty: 50 each (paper)
    max_child_num: int = 12
    min_extend_num: int = 3
    num_demos: int = 2  # examples of the parent shown in a prompt
    num_examples_extend: int = 2
    num_examples_enrich: int = 10
    max_example_num: int = 60000  # per node
    # Not in the paper (its loops never end on a full node or unparsable answers): the
    # extension calls per node and the enrich rounds per depth are bounded, and reported.
    max_extend_attempts: int = 3
    max_enrich_rounds: int = 3
    # Execution only, the output is the same for every value: with each extend attempt, send
    # up to this many of the node's later attempts as they would be if this one adds no child,
    # to fill the response cache. A node whose attempts fail (most, with a small model) then
    # waits for one answer instead of one per attempt; a node that gains a child sends fresh
    # requests (the early answers only cost tokens). 0: one attempt at a time. Needs the cache.
    extend_ahead: int = 3
    prune_threshold: float = 0.7
    prune_during_extension: bool = False  # paper: prune after exploration
    filter_threshold: float = 0.7
    sample_size: int = 50000
    sample_max_depth: int = 3
    sample_weight_cap: int = 500
    exclude_pruned: bool = True  # the paper's --sample_use_pruned (which had no effect there)
    # The per-node filter compares a node's examples with each other (the paper). "tree"
    # (ours) also compares every machine example with every given (seed) example of the
    # tree: a generated copy of a seed from another node is a repeat, not a new example.
    filter_scope: Literal["node", "tree"] = "tree"
    # The paper samples a node's examples whatever made them, so the seed examples written in
    # the config come back in `data/`; false (ours) rejects those as `seed_example` (they are
    # what went in). A loaded tree's (`tree_dir`) examples are always sampled, as the paper
    # does: they may be an earlier exploration's output.
    sample_seed_examples: bool = False
    api: Literal["chat", "completions"] = "chat"
    extend_api: Literal["chat", "completions"] | None = None  # None: `api`
    # Completions only: end each prompt with the start of the answer ("New subtask:",
    # "Examples: ### 1. Instruction:") and parse it back in front of the continuation, as
    # Alpaca does with "4. Instruction:". Not in the paper (its chat model needed no help).
    prime_answers: bool = False
    extend_sampling: SamplingConfig = field(default_factory=_paper_explore_sampling)
    enrich_sampling: SamplingConfig = field(default_factory=_paper_explore_sampling)

    def __post_init__(self) -> None:
        check(0 <= self.max_depth <= 10, "max_depth", "must be in [0, 10] (levels are "
               "unrolled into the job graph)")
        check(not self.extend_nums or len(self.extend_nums) >= self.max_depth, "extend_nums",
               f"needs one value per depth below max_depth ({self.max_depth})")
        check(not self.enrich_nums or len(self.enrich_nums) >= self.max_depth + 1,
               "enrich_nums", f"needs one value per depth up to max_depth ({self.max_depth})")
        check(all(n >= 0 for n in self.extend_nums + self.enrich_nums), "extend_nums",
               "values must be >= 0")
        check(self.max_child_num >= 1, "max_child_num", "must be >= 1")
        check(1 <= self.min_extend_num <= self.max_child_num, "min_extend_num",
               "must be in [1, max_child_num]")
        check(1 <= self.max_extend_attempts <= 20, "max_extend_attempts", "must be in [1, 20]")
        check(1 <= self.max_enrich_rounds <= 20, "max_enrich_rounds", "must be in [1, 20]")
        check(0 <= self.extend_ahead <= 20, "extend_ahead", "must be in [0, 20]")
        check(self.num_examples_enrich >= 1, "num_examples_enrich", "must be >= 1")
        check(self.sample_size >= 0, "sample_size", "must be >= 0")
        check(self.sample_weight_cap >= 1, "sample_weight_cap", "must be >= 1")
        for name in ("prune_threshold", "filter_threshold"):
            check(0.0 < getattr(self, name) <= 1.0, name, "must be in (0, 1]")
        check(not self.prime_answers or "completions" in (self.api, self.extend_api),
               "prime_answers", "needs api or extend_api 'completions' (a chat answer cannot "
               "be primed)")
        check(not (self.tree_dir and (self.root_task or self.subtasks)), "tree_dir",
               "replaces root_task and subtasks; give one or the other")

    def api_for(self, operation: Literal["extend", "enrich"]) -> Literal["chat", "completions"]:
        return (self.extend_api or self.api) if operation == "extend" else self.api

    def extend_num(self, depth: int) -> int:
        return self.extend_nums[depth] if self.extend_nums else 5

    def enrich_num(self, depth: int) -> int:
        return self.enrich_nums[depth] if self.enrich_nums else 50


class ExploreInstructRun(RunSettings, Protocol):
    """What this recipe reads of a run's config: the shared keys and its own section."""

    @property
    def explore_instruct(self) -> ExploreInstructConfig: ...
