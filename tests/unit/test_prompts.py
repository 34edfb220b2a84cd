"""Prompt templates render byte-for-byte as reviewed; the loader fails loudly and helpfully."""

from __future__ import annotations

import pathlib
import re

import pytest

from prompts import (
    BUILTIN_SEED_TASKS,
    PromptRenderError,
    PromptTemplate,
    builtin_path,
    load_prompt,
)

GOLDEN_DIR = pathlib.Path(__file__).resolve().parents[1] / "prompts" / "golden"

EIGHT_INSTRUCTIONS = [
    "Name three vegetables that grow well in shade.",
    "Explain the difference between weather and climate.",
    "Rewrite the sentence in the past tense.",
    "Is the following sentence a question or a statement?",
    "Suggest a title for a story about a lost robot.",
    "Convert 5 kilometers to miles.",
    "Summarize the email in one sentence.",
    "List four uses of baking soda around the house.",
]

# (algorithm, name) -> variables used to produce the reviewed golden rendering.
CASES: dict[tuple[str, str], dict[str, object]] = {
    ("self_instruct", "instruction_gen"): {"instructions": EIGHT_INSTRUCTIONS},
    ("self_instruct", "clf_identify"): {
        "instruction": "Tell whether the given word is a noun or a verb."
    },
    ("self_instruct", "instance_output_first"): {
        "instruction": "Classify the restaurant review as positive or negative."
    },
    ("self_instruct", "instance_input_first"): {
        "instruction": "Give a synonym for the given word."
    },
    ("ensemble_instruct", "instruction_gen"): {
        "instructions": EIGHT_INSTRUCTIONS + ["Sort the words by length. |EoS|"],
        "end_marker": " |EoS|",
    },
    ("ensemble_instruct", "instance_input_output"): {
        "instruction": "Give a synonym for the given word."
    },
    ("ensemble_instruct", "instance_output_only"): {
        "instruction": "Suggest three names for a pet goldfish."
    },
    ("ensemble_instruct", "extra_zero_shot"): {
        "instruction": "Give a synonym for the given word.", "input": "happy"
    },
    ("ensemble_instruct", "extra_few_shot"): {
        "instruction": "Give a synonym for the given word.", "input": "happy"
    },
    ("instag", "tag"): {
        "query": "Write a haiku about autumn leaves.\n\nMake it sad.", "assistant_cue": True
    },
}

TEMPLATE_IDS = [f"{a}/{n}" for a, n in CASES]


def _golden(algorithm: str, name: str) -> str:
    path = GOLDEN_DIR / f"{algorithm}__{name}.v1.txt"
    # newline="" keeps the bytes exactly as written (no universal-newline translation).
    with path.open(encoding="utf-8", newline="") as fh:
        return fh.read()


@pytest.mark.parametrize(("algorithm", "name"), list(CASES), ids=TEMPLATE_IDS)
def test_render_matches_golden(algorithm: str, name: str) -> None:
    prompt = load_prompt(algorithm, name, 1)
    assert prompt.render(**CASES[(algorithm, name)]) == _golden(algorithm, name)


@pytest.mark.parametrize(("algorithm", "name"), list(CASES), ids=TEMPLATE_IDS)
def test_templates_are_small_enough_for_a_tiny_model(algorithm: str, name: str) -> None:
    assert len(load_prompt(algorithm, name, 1).source) < 6000


@pytest.mark.parametrize(("algorithm", "name"), list(CASES), ids=TEMPLATE_IDS)
def test_extra_variables_are_ignored(algorithm: str, name: str) -> None:
    prompt = load_prompt(algorithm, name, 1)
    variables = CASES[(algorithm, name)]
    assert prompt.render(**variables, unused="x") == prompt.render(**variables)


def test_ref_format() -> None:
    prompt = load_prompt("self_instruct", "instruction_gen", 1)
    assert prompt.ref == "self_instruct/instruction_gen@v1"
    assert PromptTemplate("algo", "some_name", 3, "x").ref == "algo/some_name@v3"


def test_load_prompt_is_cached() -> None:
    assert load_prompt("self_instruct", "clf_identify", 1) is load_prompt(
        "self_instruct", "clf_identify", 1
    )


def test_load_prompt_does_not_depend_on_cwd(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    load_prompt.cache_clear()
    prompt = load_prompt("self_instruct", "clf_identify", 1)
    assert prompt.source.startswith("For each task")


def test_unknown_template_raises_file_not_found_naming_path() -> None:
    with pytest.raises(FileNotFoundError, match=r"self_instruct/no_such_prompt\.v1\.jinja"):
        load_prompt("self_instruct", "no_such_prompt", 1)
    with pytest.raises(FileNotFoundError, match=r"instruction_gen\.v99\.jinja"):
        load_prompt("self_instruct", "instruction_gen", 99)


@pytest.mark.parametrize(
    ("algorithm", "name", "version"),
    [("../etc", "passwd", 1), ("self_instruct", "a/b", 1), ("self_instruct", "x", 0)],
)
def test_invalid_identifiers_are_rejected(algorithm: str, name: str, version: int) -> None:
    with pytest.raises(ValueError, match="invalid prompt"):
        load_prompt(algorithm, name, version)


@pytest.mark.parametrize(
    ("name", "variable"),
    [
        ("instruction_gen", "instructions"),
        ("clf_identify", "instruction"),
        ("instance_output_first", "instruction"),
        ("instance_input_first", "instruction"),
    ],
)
def test_missing_variable_raises_prompt_render_error(name: str, variable: str) -> None:
    prompt = load_prompt("self_instruct", name, 1)
    with pytest.raises(PromptRenderError) as excinfo:
        prompt.render()
    message = str(excinfo.value)
    assert f"'{variable}'" in message
    assert prompt.ref in message
    assert isinstance(excinfo.value, ValueError)


def test_instruction_gen_ends_with_next_number_and_no_trailing_space() -> None:
    prompt = load_prompt("self_instruct", "instruction_gen", 1)
    eight = prompt.render(instructions=EIGHT_INSTRUCTIONS)
    assert eight.endswith("\n9.")
    lines = eight.split("\n")
    assert lines[1:9] == [f"{i}. {x}" for i, x in enumerate(EIGHT_INSTRUCTIONS, start=1)]
    assert lines[9] == "9."
    assert len(lines) == 10

    two = prompt.render(instructions=["Alpha task here.", "Beta task here."])
    assert two.endswith("\n1. Alpha task here.\n2. Beta task here.\n3.")


def test_instruction_gen_does_not_normalize_instructions() -> None:
    prompt = load_prompt("self_instruct", "instruction_gen", 1)
    raw = "  Spaced   out:"
    assert f"\n1. {raw}\n2." in prompt.render(instructions=[raw])


def test_clf_identify_structure() -> None:
    source = load_prompt("self_instruct", "clf_identify", 1).source
    demos = re.findall(r"^Task: .+\nIs it classification\? (Yes|No)$", source, flags=re.MULTILINE)
    assert len(demos) >= 24
    assert demos.count("Yes") >= 8
    assert demos.count("No") >= 12
    assert source.endswith("\n\nTask: {{ instruction }}\nIs it classification?")


def test_instance_output_first_structure() -> None:
    source = load_prompt("self_instruct", "instance_output_first", 1).source
    blocks = source.split("\n\n")
    demos = blocks[1:-1]
    assert len(demos) >= 8
    for demo in demos:
        assert demo.startswith("Task: ")
        assert "\nClass label: " in demo
    # At least one demo takes no input: its label blocks have no field line.
    assert any(
        all(line.startswith(("Task: ", "Class label: ")) for line in demo.split("\n"))
        for demo in demos
    )
    assert source.endswith("\n\nTask: {{ instruction }}\n")


def test_instance_input_first_structure() -> None:
    source = load_prompt("self_instruct", "instance_input_first", 1).source
    demos = source.split("\n\n")[1:-1]
    assert len(demos) >= 8
    for demo in demos:
        assert demo.startswith("Task: ")
        assert "Output:" in demo
        # The caller stops generation at "Example 6"; no demo may reach it.
        assert "Example 6" not in demo
    assert any("\nExample 1\n" in d for d in demos)
    assert any("Example" not in d for d in demos)
    assert source.endswith("\n\nTask: {{ instruction }}\n")


def test_builtin_path_points_into_package() -> None:
    path = builtin_path(BUILTIN_SEED_TASKS)
    assert path.is_file()
    assert path.parts[-2:] == ("self_instruct", "seed_tasks.v1.jsonl")
