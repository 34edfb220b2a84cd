"""Run configuration: RunConfig and its YAML loader, with errors that name file, line, field.

Every key is explicit; unknown keys are errors (a typo must not silently fall back to a
default). Defaults are the papers' values unless a comment says otherwise. The shared
sections are in `pipelines.settings`, each recipe's own in `pipelines/recipes/<name>/config.py`.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import yaml

from pipelines.errors import InputError
from pipelines.recipes.registry import REGISTRY
from pipelines.settings import (
    CacheConfig,
    FieldError,
    FiltersConfig,
    GeneratorConfig,
    InputConfig,
    check,
)

# The names a config's `recipe:` may give: the registry's keys.
RecipeName = Literal[tuple(REGISTRY)]  # type: ignore[valid-type]


@dataclass(frozen=True)
class SharedRunConfig:
    """The keys every config has. `RunConfig` adds one section per registered recipe that
    has one (its config class, under the recipe's name)."""

    recipe: RecipeName
    output_dir: str
    input: InputConfig | None = None  # recipes that read a dataset (filter, instag)
    seed_tasks: str = "builtin"
    seed: int = 42
    num_shards: int = 1
    max_failure_ratio: float = 0.05
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    filters: FiltersConfig = field(default_factory=FiltersConfig)
    audit_per_source: int = 20  # records per source in audit/<source>.jsonl; 0: none
    # Recipes that take the kept rows of the step before them, in this job (e.g. [filter,
    # instag]); each reads its own section of this config, none reads `input`.
    then: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check(self.recipe in REGISTRY, "recipe",
              f"must be one of {', '.join(map(repr, REGISTRY))}, got {self.recipe!r}")
        check(1 <= self.num_shards <= 1024, "num_shards", "must be in [1, 1024]")
        check(self.audit_per_source >= 0, "audit_per_source", "must be >= 0")
        entry = REGISTRY[self.recipe]
        if entry.needs_input:
            check(self.input is not None, "input", f"is required for recipe {self.recipe!r}")
        elif not entry.optional_input:
            check(self.input is None, "input", f"only applies to recipe 'filter', not "
                                               f"{self.recipe!r}")
        check(0.0 <= self.max_failure_ratio <= 1.0, "max_failure_ratio", "must be in [0, 1]")
        entry.check(self)  # type: ignore[arg-type]
        self._check_then()

    def _check_then(self) -> None:
        chained = [n for n, e in REGISTRY.items() if e.accepts_rows]
        for name in self.then:
            check(name in chained, "then", f"{name!r} cannot take another step's rows; "
                                           f"one of {', '.join(map(repr, chained))}")
            check(name != self.recipe and self.then.count(name) == 1, "then",
                  f"{name!r} appears twice in the chain (each step has its own folder)")
            step = REGISTRY[name]
            check(not step.uses_generator or REGISTRY[self.recipe].uses_generator, "then",
                  f"{name!r} calls the generator, but recipe {self.recipe!r} configures none")
            step.check(self)  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


RunConfig = dataclasses.make_dataclass(
    "RunConfig", [(name, entry.config, field(default_factory=entry.config))
                  for name, entry in REGISTRY.items() if entry.config is not None],
    bases=(SharedRunConfig,), frozen=True)
RunConfig.__module__ = __name__  # pickled by reference (Beam ships configs to workers)
RunConfig.__doc__ = "A whole run: the shared keys and every recipe's section (defaults)."


# --- path-valued fields ----------------------------------------------------------------------

@dataclass(frozen=True)
class PathField:
    """How a path-valued config field is read (`load_config`) and guarded (an output folder
    that holds it is never replaced: pipelines/outputs/output_dir.py)."""

    # A relative value names a file beside the config when one is there (else it is
    # relative to the working directory).
    near_config: bool = True
    # The value may be a name rather than a path (a model id): it is a path only when it
    # exists on this machine.
    maybe_name: bool = False
    reserved: tuple[str, ...] = ()  # values that are never paths

    def is_reserved(self, value: str) -> bool:
        return value in self.reserved


# Every config field that names a file or folder the run reads, as a dotted path through the
# sections (a tuple of sections, such as extra_generators, counts each of its items). The one
# list both `load_config` and the output guard use, so nothing is read that is not guarded;
# tests/unit/test_input_paths.py fails when a path-like field is in neither mapping.
INPUT_PATHS: Final[dict[str, PathField]] = {
    "seed_tasks": PathField(reserved=("builtin",)),
    "input.path": PathField(),
    "explore_instruct.tree_dir": PathField(),
    "filters.rules.illegal_words_file": PathField(),
    "filters.scorers.classifier.model_dir": PathField(),
    "ultrachat.world.entities_file": PathField(),
    "ultrachat.personas_file": PathField(),
    "ultrachat.materials.content_types_file": PathField(),
    # relative to the working directory, as before: moving it would orphan existing caches
    "cache.dir": PathField(near_config=False),
    # a model id, or a local weights folder (vLLM reads it relative to the working directory)
    "generator.model": PathField(near_config=False, maybe_name=True),
    "ensemble_instruct.extra_generators.generator.model": PathField(
        near_config=False, maybe_name=True),
    "ultrachat.user_generator.model": PathField(near_config=False, maybe_name=True),
}
# Path-like fields that are not inputs, and why.
NOT_INPUT_PATHS: Final[dict[str, str]] = {
    "output_dir": "the output itself (pipelines/outputs/output_dir.py decides what it may replace)",
}


def path_values(config: Any, dotted: str) -> list[str]:
    """The values of a declared path field in `config`, skipping unset and reserved ones."""
    spec = INPUT_PATHS[dotted]
    return [v for v in _values_at(config, dotted.split(".")) if v and not spec.is_reserved(v)]


def _values_at(obj: Any, keys: Sequence[str]) -> list[str]:
    if obj is None:
        return []
    if isinstance(obj, tuple):
        return [v for item in obj for v in _values_at(item, keys)]
    if not keys:
        return [obj]
    return _values_at(getattr(obj, keys[0]), keys[1:])


def _replace_at(obj: Any, keys: Sequence[str], change: Callable[[str], str]) -> Any:
    """`obj` with the string(s) at `keys` passed through `change`, through optional sections
    and tuples of sections; unchanged objects are returned as they are."""
    if obj is None or (not keys and not obj):
        return obj
    if isinstance(obj, tuple):
        return tuple(_replace_at(item, keys, change) for item in obj)
    if not keys:
        return change(obj)
    value = getattr(obj, keys[0])
    new = _replace_at(value, keys[1:], change)
    return obj if new == value else dataclasses.replace(obj, **{keys[0]: new})


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
    """Relative input paths name files beside the config when they exist there (the fields of
    INPUT_PATHS that say `near_config`)."""

    def near_config(path: str) -> str:
        if Path(path).is_absolute() or not (base / path).exists():
            return path
        return str((base / path).resolve())

    for dotted, spec in INPUT_PATHS.items():
        if spec.near_config:
            config = _replace_at(config, dotted.split("."), lambda value, spec=spec: (
                value if spec.is_reserved(value) else near_config(value)))
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
    except FieldError as exc:
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
