"""Run configuration: frozen dataclasses loaded from YAML with errors that name file, line, field.

Every key is explicit; unknown keys are errors (a typo must not silently fall back to a
default). Defaults are the papers' values unless a comment says otherwise.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from pipelines.errors import InputError

Backend = Literal["embedded", "vllm", "openai"]
# How every recipe starts a vLLM server unless told otherwise; recipes that use the same
# model with the same arguments share one server.
DEFAULT_SERVER_ARGS: tuple[str, ...] = ("--enforce-eager", "--max-model-len", "4096")


@dataclass(frozen=True)
class SamplingConfig:
    max_tokens: int = 256
    temperature: float = 0.7
    top_p: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    stop: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check(self.max_tokens > 0, "max_tokens", "must be > 0")
        _check(0.0 <= self.temperature <= 2.0, "temperature", "must be in [0, 2]")
        _check(0.0 < self.top_p <= 1.0 or self.top_p == 0.0, "top_p", "must be in [0, 1]")

    def as_request(self) -> dict[str, Any]:
        """Parameters as sent in an OpenAI-compatible request (and hashed into the cache key)."""
        body: dict[str, Any] = dataclasses.asdict(self)
        body["stop"] = list(self.stop)
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
    server_args: tuple[str, ...] = DEFAULT_SERVER_ARGS
    max_concurrency: int = 16
    timeout_s: float = 120.0
    max_attempts: int = 4
    backoff_s: float = 1.0
    max_backoff_s: float = 30.0

    def __post_init__(self) -> None:
        _check(self.max_concurrency >= 1, "max_concurrency", "must be >= 1")
        _check(self.max_attempts >= 1, "max_attempts", "must be >= 1")
        _check(self.timeout_s > 0, "timeout_s", "must be > 0")
        if self.backend == "openai":
            _check(bool(self.base_url), "base_url", "is required for backend 'openai'")
        elif self.base_url:
            _check(False, "base_url", f"only applies to backend 'openai', not {self.backend!r}")


def _paper_instruction_sampling() -> SamplingConfig:
    # Paper: max_tokens 1024, T 0.7, top_p 0.5, presence 2, stop at item 16.
    return SamplingConfig(1024, 0.7, 0.5, 2.0, 0.0, ("\n\n", "\n16", "16.", "16 ."))


def _paper_clf_sampling() -> SamplingConfig:
    return SamplingConfig(3, 0.0, 0.0, 0.0, 0.0, ("\n", "Task"))


def _paper_instance_sampling() -> SamplingConfig:
    # Paper: 300 (clf) / 350 tokens, greedy, presence 1.5, stop at "Example 6" and "Task:".
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

    def __post_init__(self) -> None:
        _check(self.num_instructions >= 1, "num_instructions", "must be >= 1")
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
class InputConfig:
    """An existing dataset for filter-only runs."""

    path: str  # a file or a glob; JSON Lines or .parquet
    instruction_field: str = "instruction"
    input_field: str | None = "input"  # None: the dataset has no input column
    output_field: str | None = "output"
    id_field: str | None = None  # None: ids are derived from (file, row, text)
    order_by: str | None = None  # a numeric column; None: input row order


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


@dataclass(frozen=True)
class RunConfig:
    recipe: Literal["self_instruct", "filter"]
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

    def __post_init__(self) -> None:
        _check(1 <= self.num_shards <= 1024, "num_shards", "must be in [1, 1024]")
        _check(self.audit_per_source >= 0, "audit_per_source", "must be >= 0")
        if self.recipe == "filter":
            _check(self.input is not None, "input", "is required for recipe 'filter'")
        else:
            _check(self.input is None, "input", f"only applies to recipe 'filter', not "
                                                f"{self.recipe!r}")
        _check(0.0 <= self.max_failure_ratio <= 1.0, "max_failure_ratio", "must be in [0, 1]")

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
    return config


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    for key in keys[:-1]:
        data = data.setdefault(key, {})
    data[keys[-1]] = value


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
        raise _PathError(path + (str(unknown[0]),),
                         f"is not a known key (known: {', '.join(sorted(known))})")
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
