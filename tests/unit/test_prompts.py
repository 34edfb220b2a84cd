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

# (algorithm, name, version) -> variables used to produce the reviewed golden rendering. Old
# versions stay listed while they ship: data generated with them names them in `prompt_ref`.
CASES: dict[tuple[str, str, int], dict[str, object]] = {
    ("self_instruct", "instruction_gen", 1): {"instructions": EIGHT_INSTRUCTIONS},
    ("self_instruct", "clf_identify", 1): {
        "instruction": "Tell whether the given word is a noun or a verb."
    },
    ("self_instruct", "clf_identify", 2): {
        "instruction": "Tell whether the given word is a noun or a verb."
    },
    ("self_instruct", "instance_output_first", 1): {
        "instruction": "Classify the restaurant review as positive or negative."
    },
    ("self_instruct", "instance_output_first", 2): {
        "instruction": "Classify the restaurant review as positive or negative."
    },
    ("self_instruct", "instance_input_first", 1): {
        "instruction": "Give a synonym for the given word."
    },
    ("ensemble_instruct", "instruction_gen", 1): {
        "instructions": EIGHT_INSTRUCTIONS + ["Sort the words by length. |EoS|"],
        "end_marker": " |EoS|",
    },
    ("ensemble_instruct", "instance_input_output", 1): {
        "instruction": "Give a synonym for the given word."
    },
    ("ensemble_instruct", "instance_output_only", 1): {
        "instruction": "Suggest three names for a pet goldfish."
    },
    ("ensemble_instruct", "extra_zero_shot", 1): {
        "instruction": "Give a synonym for the given word.", "input": "happy"
    },
    ("ensemble_instruct", "extra_few_shot", 1): {
        "instruction": "Give a synonym for the given word.", "input": "happy"
    },
    ("instag", "tag", 1): {
        "query": "Write a haiku about autumn leaves.\n\nMake it sad.", "assistant_cue": True
    },
    ("atomic_tasks", "simplify", 1): {
        "request": "Name a fruit. Then explain why it is healthy.", "input": "",
        "response": "An apple. It is rich in fibre.", "max_subtasks": 4, "assistant_cue": True
    },
    ("quality", "judge", 1): {
        "scale": 5, "instruction": "Give a synonym for the given word.", "input": "happy",
        "output": "Joyful."
    },
    ("ultrachat", "meta_topics", 1): {"n": 30},
    ("ultrachat", "subtopics", 1): {"n": 30, "topic": "Technology"},
    ("ultrachat", "questions", 1): {"n": 10, "topic": "Technology / Cloud computing"},
    ("ultrachat", "derived_questions", 1): {
        "n": 10, "topic": "Technology", "question": "How do data centres stay cool?"},
    ("ultrachat", "entity_questions", 1): {"n": 5, "entity": "Ada Lovelace"},
    ("ultrachat", "entity_followups", 1): {
        "n": 10, "kind": "specific", "entity": "Ada Lovelace",
        "question": "Why does Ada Lovelace matter to computing?"},
    ("ultrachat", "writing_instructions", 1): {"n": 10, "material": "email"},
    ("ultrachat", "refine_instruction", 1): {
        "material": "email", "instruction": "Write an email asking for a day off."},
    ("ultrachat", "material_instructions", 1): {
        "n": 5, "passage": "The lighthouse keeper climbed the stairs every evening."},
    ("ultrachat", "material_opening", 1): {
        "instruction": "Summarize this text in one sentence.",
        "passage": "The lighthouse keeper climbed the stairs every evening."},
    ("ultrachat", "user_turn", 1): {"history": [
        {"role": "user", "content": "How do tides work?"},
        {"role": "assistant", "content": "The moon's gravity pulls the oceans."}]},
    ("ultrachat", "material_instructions", 2): {
        "n": 5, "passage": "The lighthouse keeper climbed the stairs every evening.",
        "content_type": "story", "requests": ["continue it", "retell it for a child"]},
    ("ultrachat", "user_turn", 2): {
        "persona": "A retired sailor who likes short, practical answers.", "history": [
            {"role": "user", "content": "How do tides work?"},
            {"role": "assistant", "content": "The moon's gravity pulls the oceans."}]},
}

TEMPLATE_IDS = [f"{a}/{n}@v{v}" for a, n, v in CASES]


def _golden(algorithm: str, name: str, version: int) -> str:
    path = GOLDEN_DIR / f"{algorithm}__{name}.v{version}.txt"
    # newline="" keeps the bytes exactly as written (no universal-newline translation).
    with path.open(encoding="utf-8", newline="") as fh:
        return fh.read()


@pytest.mark.parametrize(("algorithm", "name", "version"), list(CASES), ids=TEMPLATE_IDS)
def test_render_matches_golden(algorithm: str, name: str, version: int) -> None:
    prompt = load_prompt(algorithm, name, version)
    rendered = prompt.render(**CASES[(algorithm, name, version)])
    assert rendered == _golden(algorithm, name, version)


@pytest.mark.parametrize(("algorithm", "name", "version"), list(CASES), ids=TEMPLATE_IDS)
def test_templates_are_small_enough_for_a_tiny_model(algorithm: str, name: str,
                                                     version: int) -> None:
    assert len(load_prompt(algorithm, name, version).source) < 6000


@pytest.mark.parametrize(("algorithm", "name", "version"), list(CASES), ids=TEMPLATE_IDS)
def test_extra_variables_are_ignored(algorithm: str, name: str, version: int) -> None:
    prompt = load_prompt(algorithm, name, version)
    variables = CASES[(algorithm, name, version)]
    assert prompt.render(**variables, unused="x") == prompt.render(**variables)


def test_every_shipped_template_has_a_golden_render() -> None:
    shipped = {
        (path.parent.name, *path.name.removesuffix(".jinja").rsplit(".v", 1))
        for path in builtin_path(BUILTIN_SEED_TASKS).parents[1].glob("*/*.jinja")
    }
    listed = {(a, n, str(v)) for a, n, v in CASES}
    explore = {(a, n, v) for a, n, v in shipped if a == "explore_instruct"}
    assert shipped - explore == listed  # explore_instruct has its own golden test


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


# The paper's templates (yizhongw/self-instruct, self_instruct/templates/), counted: the
# classification prompt's 31 answers in order, and the number of "Class label:" blocks of each
# of the output-first prompt's 16 tasks (0 field lines in tasks 13 and 16: no input).
PAPER_CLF_ANSWERS = "YNNYNYNYNNYNYNYNNNNYYNNYNNYNYNN"
PAPER_OUTPUT_FIRST_LABELS = [3, 2, 2, 2, 2, 2, 4, 2, 3, 2, 2, 2, 1, 2, 2, 1]
PAPER_OUTPUT_FIRST_NO_INPUT = [13, 16]


def test_clf_identify_has_the_papers_demos_in_the_papers_order() -> None:
    source = load_prompt("self_instruct", "clf_identify", 2).source
    demos = re.findall(r"^Task: .+\nIs it classification\? (Yes|No)$", source, flags=re.MULTILINE)
    assert len(PAPER_CLF_ANSWERS) == 31
    assert (demos.count("Yes"), demos.count("No")) == (12, 19)
    assert "".join(d[0] for d in demos) == PAPER_CLF_ANSWERS
    assert source.count("Task: ") == 32  # 31 demos + the task to classify
    assert source.endswith("\n\nTask: {{ instruction }}\nIs it classification?")


def test_instance_output_first_has_the_papers_tasks() -> None:
    source = load_prompt("self_instruct", "instance_output_first", 2).source
    blocks = source.split("\n\n")
    demos = blocks[1:-1]
    assert len(demos) == 16
    assert all(demo.startswith("Task: ") and "\nClass label: " in demo for demo in demos)
    assert [demo.count("\nClass label: ") for demo in demos] == PAPER_OUTPUT_FIRST_LABELS
    no_input = [i for i, demo in enumerate(demos, start=1)
                if all(line.startswith(("Task: ", "Class label: "))
                       for line in demo.split("\n"))]
    assert no_input == PAPER_OUTPUT_FIRST_NO_INPUT
    assert source.endswith("\n\nTask: {{ instruction }}\n")


def test_instance_input_first_structure() -> None:
    source = load_prompt("self_instruct", "instance_input_first", 1).source
    demos = source.split("\n\n")[1:-1]
    assert len(demos) == 11  # the paper's count
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
