"""The declared path-valued config fields (pipelines/config.py INPUT_PATHS): complete, read
beside the config, and guarded, so that `--overwrite` never replaces a folder holding one."""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from pathlib import Path

import pytest

from pipelines.config import INPUT_PATHS, NOT_INPUT_PATHS, RunConfig, load_config, path_values
from pipelines.errors import InputError
from pipelines.outputs.output_dir import check_local
from pipelines.recipes.ensemble_instruct.config import ExtraGeneratorConfig
from pipelines.runtime.input_locations import input_locations
from pipelines.settings import GeneratorConfig

# A field whose name says it holds a path (or a model that may be a local folder).
PATH_NAME = re.compile(r"(^|_)(path|paths|dir|dirs|file|files|folder|model|tasks)$")


def _fields(cls: type, prefix: str = "") -> list[tuple[str, typing.Any]]:
    """(dotted name, type) of every leaf field, through sections, optional sections and
    tuples of sections."""
    out = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        args = typing.get_args(hint)
        if typing.get_origin(hint) in (types.UnionType, typing.Union, tuple):
            inner = [a for a in args if a not in (type(None), Ellipsis)]
        else:
            inner = [hint]
        sections = [a for a in inner if dataclasses.is_dataclass(a)]
        if sections:
            out += _fields(sections[0], f"{prefix}{f.name}.")
        else:
            out.append((prefix + f.name, hint))
    return out


def _is_text(hint: typing.Any) -> bool:
    """str, Path, an optional one or a tuple of them (a Literal is a choice, not a path)."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (types.UnionType, typing.Union, tuple):
        return any(_is_text(a) for a in args if a not in (type(None), Ellipsis))
    return hint in (str, Path)


def test_every_path_like_field_is_declared():
    fields = dict(_fields(RunConfig))
    path_like = {name for name, hint in fields.items()
                 if _is_text(hint) and (PATH_NAME.search(name.rsplit(".", 1)[-1])
                                        or typing.get_args(hint) and Path in typing.get_args(hint)
                                        or hint is Path)}
    undeclared = sorted(path_like - set(INPUT_PATHS) - set(NOT_INPUT_PATHS))
    assert undeclared == [], (
        f"path-like config fields in neither INPUT_PATHS nor NOT_INPUT_PATHS: {undeclared} "
        "(declare them in pipelines/config.py so the run reads and guards them)")
    stale = sorted((set(INPUT_PATHS) | set(NOT_INPUT_PATHS)) - set(fields))
    assert stale == [], f"declared but not config fields: {stale}"


def test_the_walk_sees_the_fields_of_tuples_of_sections():
    fields = dict(_fields(RunConfig))
    assert "ensemble_instruct.extra_generators.generator.model" in fields
    assert "ultrachat.world.entities_file" in fields
    assert "filters.scorers.classifier.model_dir" in fields


def _cfg(tmp_path: Path, *lines: str, overrides: dict | None = None) -> RunConfig:
    config = tmp_path / "config.yaml"
    config.write_text("\n".join(["recipe: filter", f"output_dir: {tmp_path / 'out'}",
                                 "input:", f"  path: {tmp_path / 'data.jsonl'}", *lines]) + "\n")
    return load_config(config, overrides)


def test_relative_file_inputs_are_read_beside_the_config(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path.parent)
    (tmp_path / "words.txt").write_text("bad\n")
    (tmp_path / "entities.txt").write_text("Paris\n")
    (tmp_path / "clf").mkdir()
    cfg = _cfg(tmp_path, "filters:", "  rules:", "    illegal_words_file: words.txt",
               "  scorers:", "    classifier:", "      model_dir: clf",
               "ultrachat:", "  world:", "    entities_file: entities.txt",
               "cache:", "  dir: cache")
    assert cfg.filters.rules.illegal_words_file == str(tmp_path / "words.txt")
    assert cfg.filters.scorers.classifier.model_dir == str(tmp_path / "clf")
    assert cfg.ultrachat.world.entities_file == str(tmp_path / "entities.txt")
    assert cfg.cache.dir == "cache"  # relative to the working directory, as before
    assert cfg.seed_tasks == "builtin"


def test_every_declared_field_is_guarded(tmp_path):
    """Set each declared field to a location inside `out`: replacing `out` is refused even
    with overwrite (the items of a tuple of sections included)."""
    out = tmp_path / "out"
    held = out / "held"
    held.mkdir(parents=True)
    cfg = _cfg(tmp_path)
    cfg = dataclasses.replace(  # set the optional sections, so that their fields count
        cfg, ensemble_instruct=dataclasses.replace(
            cfg.ensemble_instruct, extra_generators=(ExtraGeneratorConfig(name="m2"),)),
        ultrachat=dataclasses.replace(cfg.ultrachat, user_generator=GeneratorConfig()))
    for dotted in INPUT_PATHS:
        changed = _set(cfg, dotted.split("."), str(held))
        assert str(held) in path_values(changed, dotted), dotted
        with pytest.raises(InputError, match=f"contains {re.escape(dotted)} "):
            check_local(out, input_locations(changed), overwrite=True)


def _set(obj: typing.Any, keys: list[str], value: str) -> typing.Any:
    if isinstance(obj, tuple):
        return tuple(_set(item, keys, value) for item in obj)
    if not keys:
        return value
    inner = getattr(obj, keys[0])
    if inner is None and len(keys) > 1:
        return obj  # an unset optional section
    return dataclasses.replace(obj, **{keys[0]: _set(inner, keys[1:], value)})


def test_a_model_name_is_not_a_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "out").mkdir()
    cfg = _cfg(tmp_path, overrides={"generator.model": "out"})  # also a folder here
    assert ("generator.model", "out") in input_locations(cfg)
    cfg = _cfg(tmp_path, overrides={"generator.model": "org/model"})
    assert not [w for w, _ in input_locations(cfg) if w == "generator.model"]


@pytest.mark.parametrize("where", ["cache_off", "model_cache", "hf_cache", "download_dir"])
def test_caches_are_guarded_even_when_unused(tmp_path, monkeypatch, where):
    """The response cache when caching is off, the embedded model cache, the Hugging Face
    cache and a vLLM --download-dir: an output folder holding one is never replaced."""
    base = tmp_path / "caches"
    monkeypatch.setenv("INSTRUCTBEAM_CACHE", str(base / "instructbeam"))
    monkeypatch.setenv("HF_HOME", str(base / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    overrides: dict = {"cache.enabled": False}
    out, expected = {
        "cache_off": (base / "instructbeam" / "responses", "the response cache"),
        "model_cache": (base / "instructbeam" / "models", "the model cache"),
        "hf_cache": (base / "hf", "the Hugging Face cache"),
        "download_dir": (base / "weights", "generator.model's --download-dir"),
    }[where]
    if where == "download_dir":  # a recipe that starts its generator
        overrides |= {"recipe": "self_instruct", "input": None,
                      "generator.server_args": ["--download-dir", str(base / "weights" / "x")]}
    cfg = _cfg(tmp_path, overrides=overrides)
    with pytest.raises(InputError, match=f"contains {re.escape(expected)} "):
        check_local(out, input_locations(cfg), overwrite=True)
