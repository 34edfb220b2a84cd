"""Run configuration: frozen dataclasses loaded from YAML with errors that name file, line, field.

Every key is explicit; unknown keys are errors (a typo must not silently fall back to a
default). Defaults are the papers' values unless a comment says otherwise.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from pipelines.errors import InputError

Backend = Literal["embedded", "vllm", "openai"]
# How every recipe starts a vLLM server unless told otherwise; recipes that use the same
# model with the same arguments share one server. Chunked prefill is off because vLLM's CPU
# build crashes its engine ("CPU Generator does not use offset") when a seeded request's
# prefill is split across steps, and every request here carries a seed; the token budget per
# step then has to cover a whole prompt (max-model-len).
# JSON-schema decoding (#InsTag's tagger) needs xgrammar without free whitespace, or small
# models loop on whitespace; the flag changes nothing for requests without a schema.
STRUCTURED_OUTPUTS_FLAG = "--structured-outputs-config"
STRUCTURED_OUTPUTS_ARGS: tuple[str, ...] = (
    STRUCTURED_OUTPUTS_FLAG, '{"backend": "xgrammar", "disable_any_whitespace": true}')
DEFAULT_SERVER_ARGS: tuple[str, ...] = (
    "--enforce-eager", "--max-model-len", "4096", "--no-enable-chunked-prefill",
    "--max-num-batched-tokens", "4096", *STRUCTURED_OUTPUTS_ARGS,
)


@dataclass(frozen=True)
class SamplingConfig:
    max_tokens: int = 256
    temperature: float = 0.7
    top_p: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    stop: tuple[str, ...] = ()
    # vLLM's `min_tokens`: no EOS or stop string before this many tokens (Ensemble-Instruct's
    # `min_new_tokens`). 0 is left out of the request, so existing cache keys do not change.
    min_tokens: int = 0

    def __post_init__(self) -> None:
        _check(self.max_tokens > 0, "max_tokens", "must be > 0")
        _check(0.0 <= self.temperature <= 2.0, "temperature", "must be in [0, 2]")
        _check(0.0 < self.top_p <= 1.0 or self.top_p == 0.0, "top_p", "must be in [0, 1]")
        _check(0 <= self.min_tokens <= self.max_tokens, "min_tokens",
               "must be >= 0 and <= max_tokens")

    def as_request(self) -> dict[str, Any]:
        """Parameters as sent in an OpenAI-compatible request (and hashed into the cache key)."""
        body: dict[str, Any] = dataclasses.asdict(self)
        body["stop"] = list(self.stop)
        if not body["min_tokens"]:
            del body["min_tokens"]
        # vLLM rejects top_p == 0; the papers' greedy settings mean "take the top token".
        if body["top_p"] == 0.0:
            body["top_p"] = 1.0
            body["temperature"] = 0.0
        return body

    def canonical_json(self) -> str:
        return json.dumps(self.as_request(), sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class GeneratorConfig:
    """Where completions come from; backends differ only in how the endpoint is obtained."""

    backend: Backend = "embedded"
    model: str = "smollm2-135m"
    base_url: str | None = None  # openai backend: an already running endpoint
    api_key_env: str | None = None  # name of the environment variable that holds the key
    # openai backend: the served model's version (the endpoint cannot be asked for it); part
    # of every cache key, so a new value makes cached answers of the old model unreachable.
    # `vllm` reads it from the model files (pipelines/revision.py), `embedded` from its package.
    revision: str | None = None
    server_args: tuple[str, ...] = DEFAULT_SERVER_ARGS
    max_concurrency: int = 16
    timeout_s: float = 120.0
    max_attempts: int = 4
    backoff_s: float = 1.0
    max_backoff_s: float = 30.0
    # timeout_s is the floor: with adaptive_timeout, a request may wait longer when the server
    # measurably needs longer for its max_tokens (a slow machine), so finished work is kept.
    adaptive_timeout: bool = True
    # Local servers (embedded, vllm): "auto" lets the machine decide for embedded models
    # (float32 unless the CPU has native bf16); cpu_threads None: all CPUs of a small machine.
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    cpu_threads: int | None = None

    def __post_init__(self) -> None:
        _check(self.max_concurrency >= 1, "max_concurrency", "must be >= 1")
        _check(self.cpu_threads is None or self.cpu_threads >= 1, "cpu_threads",
               "must be >= 1 (or left out: automatic)")
        _check(self.dtype == "auto" or not any(
            a == "--dtype" or a.startswith("--dtype=") for a in self.server_args), "dtype",
            "conflicts with --dtype in server_args; set only one of them")
        _check(self.max_attempts >= 1, "max_attempts", "must be >= 1")
        _check(self.timeout_s > 0, "timeout_s", "must be > 0")
        if self.backend == "openai":
            _check(bool(self.base_url), "base_url", "is required for backend 'openai'")
        elif self.base_url:
            _check(False, "base_url", f"only applies to backend 'openai', not {self.backend!r}")
        if self.revision is not None:
            _check(self.backend == "openai", "revision",
                   f"only applies to backend 'openai', not {self.backend!r} (vllm reads it from"
                   " the model files; pin a hub commit with --revision in server_args)")
            _check(bool(self.revision.strip()), "revision", "must not be empty")


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
class SelfInstructConfig:
    num_instructions: int = 100
    prompts_per_round: int = 5  # the paper's request_batch_size between pool refreshes
    max_rounds: int = 40
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
        _check(self.num_instructions >= 1, "num_instructions", "must be >= 1")
        _check(self.clf_instance_max_tokens >= max(1, self.instance_sampling.min_tokens),
               "clf_instance_max_tokens", "must be >= 1 and >= instance_sampling.min_tokens")
        _check(self.prompts_per_round >= 1, "prompts_per_round", "must be >= 1")
        _check(1 <= self.max_rounds <= 500, "max_rounds", "must be in [1, 500] (rounds are "
               "unrolled into the job graph)")
        _check(0 <= self.num_machine_demos < self.num_prompt_instructions,
               "num_machine_demos", "must be >= 0 and < num_prompt_instructions")
        _check(0.0 < self.rouge_threshold <= 1.0, "rouge_threshold", "must be in (0, 1]")
        _check(1 <= self.min_words <= self.max_words, "min_words",
               "must be >= 1 and <= max_words")
        _check(self.max_instances_per_task >= 1, "max_instances_per_task", "must be >= 1")


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
    prune_threshold: float = 0.7
    prune_during_extension: bool = False  # paper: prune after exploration
    filter_threshold: float = 0.7
    sample_size: int = 50000
    sample_max_depth: int = 3
    sample_weight_cap: int = 500
    exclude_pruned: bool = True  # the paper's --sample_use_pruned (which had no effect there)
    api: Literal["chat", "completions"] = "chat"
    extend_api: Literal["chat", "completions"] | None = None  # None: `api`
    # Completions only: end each prompt with the start of the answer ("New subtask:",
    # "Examples: ### 1. Instruction:") and parse it back in front of the continuation, as
    # Alpaca does with "4. Instruction:". Not in the paper (its chat model needed no help).
    prime_answers: bool = False
    extend_sampling: SamplingConfig = field(default_factory=_paper_explore_sampling)
    enrich_sampling: SamplingConfig = field(default_factory=_paper_explore_sampling)

    def __post_init__(self) -> None:
        _check(0 <= self.max_depth <= 10, "max_depth", "must be in [0, 10] (levels are "
               "unrolled into the job graph)")
        _check(not self.extend_nums or len(self.extend_nums) >= self.max_depth, "extend_nums",
               f"needs one value per depth below max_depth ({self.max_depth})")
        _check(not self.enrich_nums or len(self.enrich_nums) >= self.max_depth + 1,
               "enrich_nums", f"needs one value per depth up to max_depth ({self.max_depth})")
        _check(all(n >= 0 for n in self.extend_nums + self.enrich_nums), "extend_nums",
               "values must be >= 0")
        _check(self.max_child_num >= 1, "max_child_num", "must be >= 1")
        _check(1 <= self.min_extend_num <= self.max_child_num, "min_extend_num",
               "must be in [1, max_child_num]")
        _check(1 <= self.max_extend_attempts <= 20, "max_extend_attempts", "must be in [1, 20]")
        _check(1 <= self.max_enrich_rounds <= 20, "max_enrich_rounds", "must be in [1, 20]")
        _check(self.num_examples_enrich >= 1, "num_examples_enrich", "must be >= 1")
        _check(self.sample_size >= 0, "sample_size", "must be >= 0")
        _check(self.sample_weight_cap >= 1, "sample_weight_cap", "must be >= 1")
        for name in ("prune_threshold", "filter_threshold"):
            _check(0.0 < getattr(self, name) <= 1.0, name, "must be in (0, 1]")
        _check(not self.prime_answers or "completions" in (self.api, self.extend_api),
               "prime_answers", "needs api or extend_api 'completions' (a chat answer cannot "
               "be primed)")
        _check(not (self.tree_dir and (self.root_task or self.subtasks)), "tree_dir",
               "replaces root_task and subtasks; give one or the other")

    def api_for(self, operation: Literal["extend", "enrich"]) -> Literal["chat", "completions"]:
        return (self.extend_api or self.api) if operation == "extend" else self.api

    def extend_num(self, depth: int) -> int:
        return self.extend_nums[depth] if self.extend_nums else 5

    def enrich_num(self, depth: int) -> int:
        return self.enrich_nums[depth] if self.enrich_nums else 50


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
class EnsembleTasksConfig:
    """Instruction generation for one task type; these defaults are type A's (needs an input).

    `num_instructions: 0` skips the type. A round sends `prompts_per_round` prompts (the paper's
    request batch of 5) and stops once `num_instructions` are accepted.
    """

    num_instructions: int = 100
    prompts_per_round: int = 5
    max_rounds: int = 40
    num_prompt_instructions: int = 24  # 20 seed + 4 machine once 4 exist (paper and code)
    num_machine_demos: int = 4

    def __post_init__(self) -> None:
        _check(self.num_instructions >= 0, "num_instructions", "must be >= 0 (0 skips the type)")
        _check(self.prompts_per_round >= 1, "prompts_per_round", "must be >= 1")
        _check(1 <= self.max_rounds <= 500, "max_rounds", "must be in [1, 500] (rounds are "
               "unrolled into the job graph)")
        _check(0 <= self.num_machine_demos < self.num_prompt_instructions,
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
        _check(bool(re.fullmatch(r"[a-z0-9][a-z0-9_.-]{0,39}", self.name)), "name",
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
    instruction_sampling: SamplingConfig = field(default_factory=_ensemble_instruction_sampling)
    instance_sampling: SamplingConfig = field(default_factory=_ensemble_instance_sampling)
    extra_generators: tuple[ExtraGeneratorConfig, ...] = ()

    def __post_init__(self) -> None:
        _check(0.0 < self.rouge_threshold <= 1.0, "rouge_threshold", "must be in (0, 1]")
        _check(1 <= self.min_words <= self.max_words, "min_words",
               "must be >= 1 and <= max_words")
        _check(0.0 <= self.min_pairwise_rouge < 1.0, "min_pairwise_rouge", "must be in [0, 1)")
        _check(not self.eos_suffix or self.end_marker == " |EoS|", "eos_suffix",
               "reproduces the paper's ' |EoS|' marker; it needs end_marker ' |EoS|'")
        names = [x.name for x in self.extra_generators]
        _check(len(set(names)) == len(names), "extra_generators", "names must be unique")


@dataclass(frozen=True)
class InputConfig:
    """An existing dataset for filter-only runs."""

    # A file or a glob: JSON Lines, .parquet, or .json (one JSON array of rows); a Beam
    # filesystem path (gs://); or pkg://<package>/<file> for a data file shipped inside an
    # installed Python package (e.g. a corpus from the package index).
    path: str
    instruction_field: str = "instruction"
    input_field: str | None = "input"  # None: the dataset has no input column
    output_field: str | None = "output"
    id_field: str | None = None  # None: ids are derived from (file, row, text)
    order_by: str | None = None  # a numeric column; None: input row order
    # A column holding a conversation: a list of {role, content} (OpenAI) or {from, value}
    # (ShareGPT) messages, or that list as a JSON string. When set, the instruction, input
    # and output fields are not read: instruction = first user turn, output = first reply.
    messages_field: str | None = None
    max_rows_per_file: int | None = None  # read only the first N rows of each file (a slice)

    def __post_init__(self) -> None:
        _check(self.max_rows_per_file is None or self.max_rows_per_file >= 1,
               "max_rows_per_file", "must be >= 1")


@dataclass(frozen=True)
class RulesConfig:
    """EcomGPT-style cleaning of the final records (see filters/rules.py)."""

    enabled: bool = True
    illegal_words: tuple[str, ...] = ()
    illegal_words_file: str | None = None  # one word or phrase per line
    max_chars: int = 8000
    require_output: bool = True
    normalize: bool = True

    def __post_init__(self) -> None:
        _check(self.max_chars >= 1, "max_chars", "must be >= 1")


@dataclass(frozen=True)
class NoveltyFilterConfig:
    """Self-Instruct's ROUGE-L rule as a dedup pass over any data (greedy in input order)."""

    enabled: bool = False
    threshold: float = 0.7

    def __post_init__(self) -> None:
        _check(0.0 < self.threshold <= 1.0, "threshold", "must be in (0, 1]")


@dataclass(frozen=True)
class NearDupConfig:
    """MinHash LSH near-duplicate removal; written to the manifest with the run."""

    enabled: bool = False
    num_perm: int = 128
    bands: int = 16
    rows: int = 8
    shingle_size: int = 3
    threshold: float = 0.8
    seed: int = 1

    def __post_init__(self) -> None:
        _check(self.bands * self.rows == self.num_perm, "bands",
               f"bands x rows must equal num_perm ({self.bands} x {self.rows} != "
               f"{self.num_perm})")
        _check(0.0 < self.threshold <= 1.0, "threshold", "must be in (0, 1]")


@dataclass(frozen=True)
class FiltersConfig:
    """Filters applied to the final records of any recipe, in this order."""

    rules: RulesConfig = field(default_factory=RulesConfig)
    novelty: NoveltyFilterConfig = field(default_factory=NoveltyFilterConfig)
    near_dup: NearDupConfig = field(default_factory=NearDupConfig)


@dataclass(frozen=True)
class CacheConfig:
    enabled: bool = True
    dir: str | None = None  # default: $INSTRUCTBEAM_CACHE/responses or ~/.cache/instructbeam/...


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
        _check(self.sample_size is None or self.sample_size >= 1, "sample_size",
               "must be >= 1 (or null: no sampling)")
        _check(self.max_tags >= 1, "max_tags", "must be >= 1")
        _check(self.max_tag_chars >= 1, "max_tag_chars", "must be >= 1")
        _check(self.max_explanation_chars >= 0, "max_explanation_chars", "must be >= 0")
        _check(self.min_tag_count >= 0, "min_tag_count", "must be >= 0")
        _check(self.min_support > 0, "min_support", "must be > 0")
        _check(0.0 < self.min_confidence <= 1.0, "min_confidence", "must be in (0, 1]")
        _check(0.0 < self.semantic_eps < 1.0, "semantic_eps", "must be in (0, 1)")
        _check(self.semantic_min_samples >= 1, "semantic_min_samples", "must be >= 1")
        _check(self.top_tags >= 0, "top_tags", "must be >= 0")


@dataclass(frozen=True)
class RunConfig:
    recipe: Literal["self_instruct", "filter", "explore_instruct", "ensemble_instruct",
                    "instag"]
    output_dir: str
    input: InputConfig | None = None  # recipe "filter": the dataset to clean
    seed_tasks: str = "builtin"
    seed: int = 42
    num_shards: int = 1
    max_failure_ratio: float = 0.05
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    self_instruct: SelfInstructConfig = field(default_factory=SelfInstructConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    filters: FiltersConfig = field(default_factory=FiltersConfig)
    audit_per_source: int = 20  # records per source in audit/<source>.jsonl; 0: none
    explore_instruct: ExploreInstructConfig = field(default_factory=ExploreInstructConfig)
    ensemble_instruct: EnsembleInstructConfig = field(default_factory=EnsembleInstructConfig)
    instag: InsTagConfig = field(default_factory=InsTagConfig)

    def __post_init__(self) -> None:
        _check(1 <= self.num_shards <= 1024, "num_shards", "must be in [1, 1024]")
        _check(self.audit_per_source >= 0, "audit_per_source", "must be >= 0")
        if self.recipe in ("filter", "instag"):
            _check(self.input is not None, "input", f"is required for recipe {self.recipe!r}")
        else:
            _check(self.input is None, "input", f"only applies to recipe 'filter', not "
                                                f"{self.recipe!r}")
        _check(0.0 <= self.max_failure_ratio <= 1.0, "max_failure_ratio", "must be in [0, 1]")
        if self.recipe == "explore_instruct":
            ei = self.explore_instruct
            _check(bool(ei.root_task or ei.tree_dir), "explore_instruct",
                   "needs root_task (with root_examples) or tree_dir")
        if self.recipe == "instag" and self.instag.structured_output:
            _check(self.generator.backend == "openai"
                   or STRUCTURED_OUTPUTS_FLAG in self.generator.server_args, "generator",
                   f"server_args need {' '.join(STRUCTURED_OUTPUTS_ARGS)!r} for "
                   "instag.structured_output (or set instag.structured_output: false)")
        if self.recipe == "ensemble_instruct":
            _check(len(self.ensemble_instruct.extra_generators) >= 2, "ensemble_instruct",
                   "needs extra_generators: at least 2 other models answer each instance")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class _FieldError(ValueError):
    def __init__(self, name: str, problem: str) -> None:
        super().__init__(problem)
        self.name = name
        self.problem = problem


def _check(ok: bool, name: str, problem: str) -> None:
    if not ok:
        raise _FieldError(name, problem)


# --- loading ---------------------------------------------------------------------------------

def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Read and validate a YAML config; every problem is one InputError naming file:line field."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{path}: config file not found") from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not valid UTF-8 (byte {exc.start})") from None
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise InputError(f"{path}{line}: invalid YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}:1: the config must be a mapping of keys to values")
    lines = _key_lines(node)
    for dotted, value in (overrides or {}).items():
        _set_dotted(data, dotted, value)
    config_dir = path.resolve().parent
    try:
        config = _build(RunConfig, data, ())
    except _PathError as exc:
        if _from_override(exc.path, overrides or {}, lines):
            raise InputError(f"--set {'.'.join(exc.path)}: {exc.problem.removeprefix('is ')}"
                             ) from None
        line = lines.get(exc.path) or lines.get(exc.path[:-1]) or 1
        raise InputError(f"{path}:{line}: field '{'.'.join(exc.path)}' {exc.problem}") from None
    return _resolve_paths(config, config_dir)


def _resolve_paths(config: RunConfig, base: Path) -> RunConfig:
    """Relative input paths name files beside the config when they exist there."""

    def near_config(path: str) -> str:
        if Path(path).is_absolute() or not (base / path).exists():
            return path
        return str((base / path).resolve())

    seeds = config.seed_tasks if config.seed_tasks == "builtin" else near_config(
        config.seed_tasks)
    config = dataclasses.replace(config, seed_tasks=seeds)
    if config.input is not None:
        config = dataclasses.replace(config, input=dataclasses.replace(
            config.input, path=near_config(config.input.path)))
    if config.explore_instruct.tree_dir:
        config = dataclasses.replace(config, explore_instruct=dataclasses.replace(
            config.explore_instruct, tree_dir=near_config(config.explore_instruct.tree_dir)))
    return config


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    for depth, key in enumerate(keys[:-1], 1):
        data = data.setdefault(key, {})
        if not isinstance(data, dict):
            raise InputError(f"--set {dotted}: '{'.'.join(keys[:depth])}' is a value, not a "
                             "section")
    data[keys[-1]] = value


def _from_override(error: tuple[str, ...], overrides: dict[str, Any],
                   lines: dict[tuple[str, ...], int]) -> bool:
    """Whether a problem at `error` was brought in by `--set` rather than the YAML file: an
    override set that key or a section above it, or created the unknown section itself."""
    for dotted in overrides:
        key = tuple(dotted.split("."))
        if error[:len(key)] == key or (key[:len(error)] == error and error not in lines):
            return True
    return False


class _PathError(Exception):
    def __init__(self, path: tuple[str, ...], problem: str) -> None:
        super().__init__(problem)
        self.path = path
        self.problem = problem


def _build(cls: type, data: Any, path: tuple[str, ...]) -> Any:
    if not isinstance(data, dict):
        raise _PathError(path, f"must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        close = difflib.get_close_matches(str(unknown[0]), known, n=1)
        hint = f"; did you mean `{close[0]}`?" if close else \
            f" (known: {', '.join(sorted(known))})"
        raise _PathError(path + (str(unknown[0]),), f"is not a known key{hint}")
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _coerce(hints[name], value, path + (name,))
    missing = [n for n, f in known.items() if n not in kwargs
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise _PathError(path + (missing[0],), "is required")
    try:
        return cls(**kwargs)
    except _FieldError as exc:
        raise _PathError(path + (exc.name,), exc.problem) from None


def _coerce(hint: Any, value: Any, path: tuple[str, ...]) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, path)  # type: ignore[arg-type]
    if origin in (types.UnionType, typing.Union):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(inner[0], value, path)
    if origin is Literal:
        if value not in args:
            raise _PathError(path, f"must be one of {', '.join(map(repr, args))}, got {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise _PathError(path, f"must be a list, got {type(value).__name__}")
        return tuple(_coerce(args[0], v, path) for v in value)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _PathError(path, f"must be a number, got {value!r}")
        return float(value)
    if hint is int or hint is bool or hint is str:
        if type(value) is not hint:
            raise _PathError(path, f"must be {hint.__name__}, got {type(value).__name__} "
                                   f"{value!r}")
        return value
    raise _PathError(path, f"unsupported type {hint}")  # pragma: no cover - programming error


def _key_lines(node: yaml.Node | None, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], int]:
    """Map each dotted key path to its 1-based line in the YAML source."""
    lines: dict[tuple[str, ...], int] = {}
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = prefix + (str(key_node.value),)
            lines[key] = key_node.start_mark.line + 1
            lines.update(_key_lines(value_node, key))
    return lines
