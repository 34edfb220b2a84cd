"""Bad input gives one clear error naming file, line and field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipelines.config import load_config
from pipelines.errors import InputError
from pipelines.recipes.self_instruct.seeds import read_seed_tasks

GOOD = """\
recipe: self_instruct
output_dir: out/x
generator:
  backend: embedded
  model: smollm2-135m
self_instruct:
  num_instructions: 10
  max_prompts: 2
"""


def _write(tmp_path: Path, text: str, name: str = "c.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_good_config_loads(tmp_path):
    cfg = load_config(_write(tmp_path, GOOD))
    assert cfg.self_instruct.max_prompts == 2
    assert cfg.self_instruct.prompts_per_round == 5  # the paper's value by default
    # The item stops ("\n16", ...) are derived per request from num_prompt_instructions.
    assert cfg.self_instruct.instruction_sampling.stop == ("\n\n",)
    assert cfg.self_instruct.clf_instance_max_tokens == 300


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (GOOD.replace("  max_prompts: 2", "  max_prompt: 2"),
         ":8: field 'self_instruct.max_prompt' is not a known key; did you mean `max_prompts`?"),
        (GOOD.replace("generator:", "generater:"),
         ":3: field 'generater' is not a known key; did you mean `generator`?"),
        (GOOD + "zzz: 1\n",
         ":9: field 'zzz' is not a known key (known: atomic_tasks, audit_per_source, "),
        (GOOD.replace("num_instructions: 10", "num_instructions: ten"),
         ":7: field 'self_instruct.num_instructions' must be int"),
        (GOOD.replace("max_prompts: 2", "max_prompts: 0"),
         ":8: field 'self_instruct.max_prompts' must be >= 1"),
        (GOOD.replace("backend: embedded", "backend: llama"),
         ":4: field 'generator.backend' must be one of"),
        (GOOD.replace("backend: embedded", "backend: openai"),
         "field 'generator.base_url' is required for backend 'openai'"),
        (GOOD.replace("recipe: self_instruct\n", ""), ":1: field 'recipe' is required"),
        ("recipe: [unclosed\n", ":2: invalid YAML"),
        ("- just\n- a list\n", ":1: the config must be a mapping"),
    ],
)
def test_bad_config_names_line_and_field(tmp_path, text, expected):
    path = _write(tmp_path, text)
    with pytest.raises(InputError) as err:
        load_config(path)
    assert str(path) in str(err.value)
    assert expected in str(err.value)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"self_instruct.max_prompt": 5},
         "--set self_instruct.max_prompt: not a known key; did you mean `max_prompts`?"),
        ({"self_instruct.max_prompts": "five"},
         "--set self_instruct.max_prompts: must be int"),
        ({"self_instruct.max_prompts": 0}, "--set self_instruct.max_prompts: must be >= 1"),
        ({"generater.model": "x"}, "--set generater: not a known key; did you mean `generator`?"),
        ({"self_instruct.max_prompts.x": 1},
         "--set self_instruct.max_prompts.x: 'self_instruct.max_prompts' is a value, not a "
         "section"),
    ],
)
def test_bad_override_is_reported_against_set_not_the_file(tmp_path, overrides, expected):
    """A typo in --set used to be reported at a line of the YAML file that has no typo."""
    with pytest.raises(InputError) as err:
        load_config(_write(tmp_path, GOOD), overrides)
    assert str(err.value) == expected or str(err.value).startswith(expected)
    assert "c.yaml" not in str(err.value)


def test_file_errors_stay_with_the_file_when_overrides_are_given(tmp_path):
    text = GOOD.replace("  max_prompts: 2", "  max_prompt: 2")
    with pytest.raises(InputError, match=r"c\.yaml:8: field 'self_instruct\.max_prompt'"):
        load_config(_write(tmp_path, text), {"self_instruct.num_instructions": 5})


def test_missing_and_non_utf8_config(tmp_path):
    with pytest.raises(InputError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes("recipe: caf\xe9\n".encode("latin-1"))
    with pytest.raises(InputError, match="not valid UTF-8"):
        load_config(bad)


SEED = {"id": "s1", "instruction": "Name a color.", "is_classification": False,
        "instances": [{"input": "", "output": "Blue"}]}


def _seed_file(tmp_path: Path, lines: list[str] | bytes) -> str:
    path = tmp_path / "seeds.jsonl"
    if isinstance(lines, bytes):
        path.write_bytes(lines)
    else:
        path.write_text("\n".join(lines) + "\n")
    return str(path)


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        ([json.dumps(SEED), "{not json"], ":2: malformed JSON"),
        ([json.dumps(SEED | {"instruction": 3})], ":1: field 'instruction' must be str"),
        ([json.dumps({k: v for k, v in SEED.items() if k != "instances"})],
         ":1: field 'instances' is missing"),
        ([json.dumps(SEED | {"instances": [{"input": ""}]})],
         ":1: field 'instances[0].output' is missing"),
        ([json.dumps(SEED | {"is_classification": "no"})],
         ":1: field 'is_classification' must be bool"),
        ([json.dumps(SEED), json.dumps(SEED)], ":2: field 'id' repeats 's1'"),
        ([json.dumps([1, 2])], ":1: expected a JSON object"),
        ([""], "contains no seed tasks"),
    ],
)
def test_bad_seed_files(tmp_path, lines, expected):
    path = _seed_file(tmp_path, lines)
    with pytest.raises(InputError) as err:
        read_seed_tasks(path)
    assert path in str(err.value) and expected in str(err.value)


def test_non_utf8_and_missing_seed_files(tmp_path):
    path = _seed_file(tmp_path, json.dumps(SEED).encode() + b"\n{\"id\": \"\xff\"}\n")
    with pytest.raises(InputError, match=r":2: not valid UTF-8"):
        read_seed_tasks(path)
    with pytest.raises(InputError, match="seed file not found"):
        read_seed_tasks(str(tmp_path / "missing.jsonl"))


def test_builtin_seeds_load():
    tasks = read_seed_tasks("builtin")
    assert len(tasks) >= 40
    assert any(t.is_classification for t in tasks)
