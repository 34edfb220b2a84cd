"""The config sections every recipe shares: generator, sampling, input, filters, cache.

They live apart from `pipelines.config` (RunConfig and the YAML loader) because each recipe's
own section (`pipelines/recipes/<name>/config.py`) is built from them, while the loader takes
every recipe's section from the registry: config -> recipes -> recipe config -> settings is a
line, not a cycle. `check` is how a section reports a bad value: the loader turns it into one
error naming the file, the line and the field.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from filters.quality import DEFAULT_MIN, SCORER_OUTPUTS

# The generator backends a config may name, and which of them are endpoints someone else
# runs (they take `base_url` and `revision`). Their implementations are the registry in
# pipelines/generators/backends.py, which sits above this module and reads these names; a test
# checks that the two agree.
Backend = Literal["embedded", "vllm", "openai"]
BACKEND_NAMES: tuple[str, ...] = typing.get_args(Backend)
REMOTE_BACKENDS = frozenset({"openai"})

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
        check(self.max_tokens > 0, "max_tokens", "must be > 0")
        check(0.0 <= self.temperature <= 2.0, "temperature", "must be in [0, 2]")
        check(0.0 < self.top_p <= 1.0 or self.top_p == 0.0, "top_p", "must be in [0, 1]")
        check(0 <= self.min_tokens <= self.max_tokens, "min_tokens",
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


@dataclass(frozen=True)
class GeneratorConfig:
    """Where completions come from; backends differ only in how the endpoint is obtained."""

    backend: Backend = "embedded"
    model: str = "smollm2-135m"
    base_url: str | None = None  # openai backend: an already running endpoint
    api_key_env: str | None = None  # name of the environment variable that holds the key
    # openai backend: the served model's version (the endpoint cannot be asked for it); part
    # of every cache key, so a new value makes cached answers of the old model unreachable.
    # `vllm` reads it from the model files (pipelines/generators/revision.py), `embedded`
    # from its package.
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
    # Let the first request of each prompt template (per stage and round) answer before the
    # others of that template are sent, so they find its prefix in vLLM's prefix cache. Off by
    # default: measured without it, the demo's shared-prefix stages already hit 83-89 % of
    # prompt tokens (vLLM admits ~4 prompts a step), and the gate holds the others for a whole
    # answer; turn it on where a bench shows it pays.
    prefix_warmup: bool = False

    @property
    def warms_prefixes(self) -> bool:
        """Whether requests of one template wait for its first."""
        return self.prefix_warmup

    def __post_init__(self) -> None:
        check(self.max_concurrency >= 1, "max_concurrency", "must be >= 1")
        check(self.cpu_threads is None or self.cpu_threads >= 1, "cpu_threads",
               "must be >= 1 (or left out: automatic)")
        check(self.dtype == "auto" or not any(
            a == "--dtype" or a.startswith("--dtype=") for a in self.server_args), "dtype",
            "conflicts with --dtype in server_args; set only one of them")
        check(self.max_attempts >= 1, "max_attempts", "must be >= 1")
        check(self.timeout_s > 0, "timeout_s", "must be > 0")
        check(self.backend in BACKEND_NAMES, "backend",
              f"must be one of {', '.join(map(repr, BACKEND_NAMES))}, got {self.backend!r}")
        remote = self.backend in REMOTE_BACKENDS  # an endpoint someone else runs
        if remote:
            check(bool(self.base_url), "base_url", f"is required for backend {self.backend!r}")
        elif self.base_url:
            check(False, "base_url", f"only applies to a remote endpoint (backend 'openai'), "
                                     f"not {self.backend!r}")
        if self.revision is not None:
            check(remote, "revision",
                  f"only applies to backend 'openai', not {self.backend!r} (vllm reads it from"
                  " the model files; pin a hub commit with --revision in server_args)")
            check(bool(self.revision.strip()), "revision", "must not be empty")


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
        check(self.max_rows_per_file is None or self.max_rows_per_file >= 1,
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
    # multi-turn input: reject conversations that open with the assistant's message
    reject_fragments: bool = True

    def __post_init__(self) -> None:
        check(self.max_chars >= 1, "max_chars", "must be >= 1")


@dataclass(frozen=True)
class NoveltyFilterConfig:
    """Self-Instruct's ROUGE-L rule as a dedup pass over any data (greedy in input order)."""

    enabled: bool = False
    threshold: float = 0.7

    def __post_init__(self) -> None:
        check(0.0 < self.threshold <= 1.0, "threshold", "must be in (0, 1]")


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
        check(self.bands * self.rows == self.num_perm, "bands",
               f"bands x rows must equal num_perm ({self.bands} x {self.rows} != "
               f"{self.num_perm})")
        check(0.0 < self.threshold <= 1.0, "threshold", "must be in (0, 1]")


@dataclass(frozen=True)
class TextStatsConfig:
    """Cheap text statistics as scores (filters/text_stats.py); they drop nothing."""

    enabled: bool = False


@dataclass(frozen=True)
class LlmJudgeConfig:
    """The run's generator rates each row 1..scale on a rubric (prompts/quality/judge.v<N>),
    greedy, through the response cache; answers that do not parse become dead letters."""

    enabled: bool = False
    scale: int = 5
    prompt_version: int = 1
    # JSON-schema decoding (vLLM `structured_outputs`); off for endpoints without it.
    structured_output: bool = True
    max_tokens: int = 128
    max_rationale_chars: int = 200
    # The judge model's context in tokens; None: the `--max-model-len` of a server the run
    # starts, else 4096. A row longer than fits is cut by the tokens that do not fit, and the
    # judge is told where.
    context_tokens: int | None = None

    def __post_init__(self) -> None:
        check(2 <= self.scale <= 10, "scale", "must be in [2, 10]")
        check(self.context_tokens is None or self.context_tokens >= self.max_tokens + 512,
              "context_tokens",
              "must leave at least 512 tokens beside max_tokens for the row")
        check(self.prompt_version >= 1, "prompt_version", "must be >= 1")
        check(self.max_tokens >= 16, "max_tokens", "must be >= 16")
        check(self.max_rationale_chars >= 20, "max_rationale_chars", "must be >= 20")


@dataclass(frozen=True)
class ClassifierConfig:
    """A logistic regression over sentence embeddings, trained by `instructbeam
    train-classifier` (filters/quality_classifier.py); scores P(good)."""

    enabled: bool = False
    model_dir: str | None = None  # what train-classifier wrote (--out)

    def __post_init__(self) -> None:
        check(not self.enabled or bool(self.model_dir), "model_dir",
              "is required when the classifier is enabled (instructbeam train-classifier "
              "LABELS.jsonl --out DIR writes one)")


@dataclass(frozen=True)
class ScorersConfig:
    """The QualityScorer family: each adds named scores to every row and drops nothing."""

    text_stats: TextStatsConfig = field(default_factory=TextStatsConfig)
    llm_judge: LlmJudgeConfig = field(default_factory=LlmJudgeConfig)
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)

    def enabled(self) -> tuple[str, ...]:
        """The enabled scorers' step names."""
        return tuple(name for name in SCORER_STEPS if getattr(self, name).enabled)


@dataclass(frozen=True)
class ScoreFilterConfig:
    """Keep rows whose score `score` lies in [min, max]; no bound given: the scorer's default
    (llm_judge >= 4, classifier >= 0.5)."""

    score: str
    min: float | None = None
    max: float | None = None

    def __post_init__(self) -> None:
        known = [n for names in SCORER_OUTPUTS.values() for n in names]
        close = difflib.get_close_matches(self.score, known, n=1)
        check(self.score in known, "score",
              f"unknown score {self.score!r}" + (f"; did you mean {close[0]!r}?" if close
                                                  else f" (known: {', '.join(known)})"))
        check(self.min is None or self.max is None or self.min <= self.max, "min",
              "must be <= max")
        check(self.min is not None or self.max is not None or self.score in DEFAULT_MIN,
              "min", f"or max is required for score {self.score!r} (it has no default)")

    def bounds(self) -> tuple[float | None, float | None]:
        """(min, max) as applied: the scorer's default minimum when neither is given."""
        if self.min is None and self.max is None:
            return DEFAULT_MIN[self.score], None
        return self.min, self.max


# The steps a filter chain may list in `filters.order`; "scorers" stands for every enabled
# scorer in SCORER_STEPS order.
SCORER_STEPS: tuple[str, ...] = tuple(SCORER_OUTPUTS)
SCORERS = "scorers"
SCORE_FILTERS = "score_filters"
FILTER_STEPS: tuple[str, ...] = ("rules", *SCORER_STEPS, SCORERS, SCORE_FILTERS, "novelty",
                                 "near_dup")
DEFAULT_ORDER: tuple[str, ...] = ("rules", SCORERS, SCORE_FILTERS, "novelty", "near_dup")


@dataclass(frozen=True)
class FiltersConfig:
    """Filters applied to the final records of any recipe, in `order`.

    A step runs when it is listed in `order` and enabled (score filters: when any is
    configured). Leaving `rules` out of `order` turns it off; a step that is off by default
    but enabled must be listed (else the config is an error, not a silently skipped step).
    """

    rules: RulesConfig = field(default_factory=RulesConfig)
    novelty: NoveltyFilterConfig = field(default_factory=NoveltyFilterConfig)
    near_dup: NearDupConfig = field(default_factory=NearDupConfig)
    scorers: ScorersConfig = field(default_factory=ScorersConfig)
    score_filters: tuple[ScoreFilterConfig, ...] = ()
    order: tuple[str, ...] = DEFAULT_ORDER

    def __post_init__(self) -> None:
        for name in self.order:
            close = difflib.get_close_matches(name, FILTER_STEPS, n=1)
            check(name in FILTER_STEPS, "order",
                  f"unknown step {name!r}" + (f"; did you mean {close[0]!r}?" if close else
                                              f" (known: {', '.join(FILTER_STEPS)})"))
        expanded = [s for name in self.order
                    for s in (SCORER_STEPS if name == SCORERS else (name,))]
        twice = sorted({s for s in expanded if expanded.count(s) > 1})
        check(not twice, "order", f"lists {', '.join(map(repr, twice))} twice")
        wanted = [*(["novelty"] if self.novelty.enabled else []),
                  *(["near_dup"] if self.near_dup.enabled else []),
                  *self.scorers.enabled(), *([SCORE_FILTERS] if self.score_filters else [])]
        missing = [s for s in wanted if s not in expanded]
        check(not missing, "order", f"leaves out {', '.join(map(repr, missing))}, which is "
                                    "enabled; add it where it should run")
        for sf in self.score_filters:
            scorer = next(s for s, names in SCORER_OUTPUTS.items() if sf.score in names)
            check(scorer in self.scorers.enabled() and
                  expanded.index(scorer) < expanded.index(SCORE_FILTERS), "score_filters",
                  f"score {sf.score!r} needs scorers.{scorer} enabled and listed before "
                  f"score_filters in order")

    def steps(self) -> tuple[str, ...]:
        """The steps that run, in order (`scorers` expanded to the enabled scorers)."""
        enabled = {"rules": self.rules.enabled, "novelty": self.novelty.enabled,
                   "near_dup": self.near_dup.enabled, SCORE_FILTERS: bool(self.score_filters),
                   **{s: s in self.scorers.enabled() for s in SCORER_STEPS}}
        return tuple(s for name in self.order
                     for s in (SCORER_STEPS if name == SCORERS else (name,)) if enabled[s])


@dataclass(frozen=True)
class CacheConfig:
    enabled: bool = True
    dir: str | None = None  # default: $INSTRUCTBEAM_CACHE/responses or ~/.cache/instructbeam/...
    # A request an earlier run failed for good is replayed as that failure, so a rerun makes
    # the same decisions; true asks them again (`run --retry-failed`), which can change what
    # later prompts of a bootstrap see and so re-ask them too.
    retry_failed: bool = False


class FieldError(ValueError):
    def __init__(self, name: str, problem: str) -> None:
        super().__init__(problem)
        self.name = name
        self.problem = problem


def check(ok: bool, name: str, problem: str) -> None:
    if not ok:
        raise FieldError(name, problem)


class RunSettings(Protocol):
    """The keys every config has, as a recipe reads them (`pipelines.config.RunConfig` has
    them, and one section per recipe). Each recipe's `<Name>Run` protocol (its config.py)
    adds its own section: a recipe names what it reads, and can be read, typed and tested
    with just that, never the whole config of every recipe."""

    @property
    def recipe(self) -> str: ...
    @property
    def output_dir(self) -> str: ...
    @property
    def input(self) -> InputConfig | None: ...
    @property
    def seed_tasks(self) -> str: ...
    @property
    def seed(self) -> int: ...
    @property
    def num_shards(self) -> int: ...
    @property
    def max_failure_ratio(self) -> float: ...
    @property
    def generator(self) -> GeneratorConfig: ...
    @property
    def cache(self) -> CacheConfig: ...
    @property
    def filters(self) -> FiltersConfig: ...
    @property
    def audit_per_source(self) -> int: ...
    @property
    def then(self) -> tuple[str, ...]: ...
