"""The built-in Self-Instruct seed set is well-formed and would pass our own instruction filters."""

from __future__ import annotations

import json
import re
import string
from typing import Any

import pytest

from prompts import BUILTIN_SEED_TASKS, builtin_path

# Same whole-word, case-insensitive blacklist the instruction filter applies to generated tasks.
BLACKLIST_RE = re.compile(
    r"\b(images?|graphs?|pictures?|files?|maps?|draw|plot|go to)\b", re.IGNORECASE
)
ID_RE = re.compile(r"^seed_task_(\d+)$")
NAME_RE = re.compile(r"^[a-z0-9]+(?:_[a-z0-9]+)*$")
EXPECTED_KEYS = {"id", "name", "instruction", "instances", "is_classification"}


def _raw_text() -> str:
    return builtin_path(BUILTIN_SEED_TASKS).read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def tasks() -> list[dict[str, Any]]:
    return [json.loads(line) for line in _raw_text().splitlines()]


def test_file_is_clean_jsonl() -> None:
    text = _raw_text()
    assert text.endswith("\n")
    for line in text.splitlines():
        assert line.strip(), "blank line in seed file"
        assert line == line.rstrip(), "trailing whitespace"
        assert isinstance(json.loads(line), dict)


def test_enough_tasks(tasks: list[dict[str, Any]]) -> None:
    assert len(tasks) >= 48


def test_schema(tasks: list[dict[str, Any]]) -> None:
    for task in tasks:
        assert set(task) == EXPECTED_KEYS, task.get("id")
        assert isinstance(task["is_classification"], bool)
        assert NAME_RE.match(task["name"]), task["name"]
        assert isinstance(task["instances"], list)
        assert task["instances"]
        for instance in task["instances"]:
            assert set(instance) == {"input", "output"}
            assert isinstance(instance["input"], str)
            assert isinstance(instance["output"], str)
            assert instance["output"].strip(), task["id"]
            assert instance["input"] == instance["input"].strip()
            assert instance["output"] == instance["output"].strip()


def test_ids_sequential_and_unique(tasks: list[dict[str, Any]]) -> None:
    assert [t["id"] for t in tasks] == [f"seed_task_{i}" for i in range(len(tasks))]
    assert all(ID_RE.match(t["id"]) for t in tasks)


def test_names_and_instructions_unique(tasks: list[dict[str, Any]]) -> None:
    names = [t["name"] for t in tasks]
    instructions = [t["instruction"] for t in tasks]
    assert len(set(names)) == len(names)
    assert len(set(instructions)) == len(instructions)
    assert len({i.lower() for i in instructions}) == len(instructions)


def test_mix_of_task_types(tasks: list[dict[str, Any]]) -> None:
    n = len(tasks)
    n_clf = sum(t["is_classification"] for t in tasks)
    n_with_input = sum(bool(t["instances"][0]["input"]) for t in tasks)
    # About 1/4 classification and about 2/3 with a non-empty input.
    assert 0.18 <= n_clf / n <= 0.32, n_clf
    assert 0.55 <= n_with_input / n <= 0.75, n_with_input
    # Both kinds of task occur with and without input.
    kinds = {(t["is_classification"], bool(t["instances"][0]["input"])) for t in tasks}
    assert kinds == {(True, True), (True, False), (False, True), (False, False)}


def test_classification_outputs_are_short_labels(tasks: list[dict[str, Any]]) -> None:
    for task in tasks:
        if task["is_classification"]:
            output = task["instances"][0]["output"]
            assert "\n" not in output, task["id"]
            assert len(output.split()) <= 3, task["id"]


def test_instructions_pass_instruction_filters(tasks: list[dict[str, Any]]) -> None:
    for task in tasks:
        instruction = task["instruction"]
        assert instruction == re.sub(r"\s+", " ", instruction).strip(), task["id"]
        assert instruction.isascii(), task["id"]
        assert 4 <= len(instruction.split()) <= 150, task["id"]
        assert 6 <= len(instruction.split()) <= 30, task["id"]
        assert not BLACKLIST_RE.search(instruction), task["id"]
        assert not instruction.startswith("Write a program"), task["id"]
        assert instruction[0].isascii(), task["id"]
        assert instruction[0] not in string.punctuation, task["id"]
