"""Explore-Instruct prompts render byte-for-byte as reviewed, per domain, and keep the paper's
structure (reference §3.4): requirements list, target task, demos between ###, the existing
subtasks and peers as Python lists, then the extend or enrich request."""

from __future__ import annotations

import pathlib

import pytest

from prompts import PromptRenderError, load_prompt

GOLDEN_DIR = pathlib.Path(__file__).resolve().parents[1] / "prompts" / "golden"
DEMOS = [
    {"instruction": "Say the same thing in different words.",
     "input": "The meeting was moved to Friday because half of the team was travelling.",
     "output": "Since many team members were away, the meeting now takes place on Friday."},
    {"instruction": "Make this message more polite.", "input": "",
     "output": "Could you please send me the report when you have a moment?"},
]
COMMON = {"target": "Help with editing text", "demos": DEMOS,
          "children": "['paraphrase', 'grammar_correction']", "peers": "[]", "primer": ""}
CASES = {
    ("extend", "rewrite"): COMMON | {"max_children": 12, "n_children": 2, "k": 3,
                                     "num_examples": 2},
    ("extend", "math"): COMMON | {"target": "Solve math problems", "max_children": 12,
                                  "n_children": 0, "k": 5, "num_examples": 2,
                                  "children": "[]", "demos": DEMOS[:1]},
    ("enrich", "rewrite"): COMMON | {"num_examples": 10, "name": "Paraphrase",
                                     "reason": "Restating a text in new words."},
    ("enrich", "brainstorming"): COMMON | {"target": "Brainstorm ideas", "num_examples": 10,
                                           "name": "Party planning", "reason": "Plans help.",
                                           "peers": "['story_ideas']", "demos": []},
}
IDS = [f"{name}-{domain}" for name, domain in CASES]


def _render(name: str, domain: str, **extra: object) -> str:
    return load_prompt("explore_instruct", name, 1).render(domain=domain, **CASES[(name, domain)]
                                                           | extra)


@pytest.mark.parametrize(("name", "domain"), list(CASES), ids=IDS)
def test_render_matches_golden(name, domain):
    path = GOLDEN_DIR / f"explore_instruct__{name}__{domain}.v1.txt"
    with path.open(encoding="utf-8", newline="") as fh:
        assert _render(name, domain) == fh.read()


def test_extend_structure():
    text = _render("extend", "rewrite")
    head, _, tail = text.partition("\n\nTarget task: Help with editing text\nExamples:\n")
    assert head.count("\n14. ") == 1 and "\n1. Instruction: ____" in head
    assert tail.startswith("###\n1. Instruction: Say the same thing in different words.\n")
    assert "###\n2. Instruction: Make this message more polite.\nInput: <noinput>\n" in tail
    assert "\n###\n\nSubtasks that this target task already has: ['paraphrase', " \
           "'grammar_correction'].\nPeer tasks that this target task already has: [].\n\n" in tail
    assert text.endswith("12 varied and complementary subtasks, and 2 of them exist already. "
                         "Propose 3 new subtasks, give the reason for each, and then write 2 "
                         "examples of each new subtask:")


def test_unnumbered_domains_and_math_rules():
    math = _render("extend", "math")
    assert "\n1. Instruction:" not in math and "###\nInstruction: Say the same" in math
    assert "\\boxed{...}" in math and "LaTeX" in math
    brainstorm = _render("enrich", "brainstorming")
    assert "<noinput>" in brainstorm and "Examples:\n###" not in brainstorm  # no demos
    assert brainstorm.endswith("New subtask: Party planning\nReason: Plans help.")


def test_primer_ends_the_prompt_when_given():
    assert _render("extend", "rewrite", primer="New subtask:").endswith(
        "each new subtask:\nNew subtask:")
    assert _render("enrich", "rewrite", primer="Examples:\n###\n1. Instruction:").endswith(
        "Reason: Restating a text in new words.\nExamples:\n###\n1. Instruction:")


@pytest.mark.parametrize("name", ["extend", "enrich"])
def test_missing_variable_is_an_error(name):
    with pytest.raises(PromptRenderError, match="missing variable"):
        load_prompt("explore_instruct", name, 1).render(domain="rewrite")
