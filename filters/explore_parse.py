"""Explore-Instruct response parsing and per-example rules, in the order of the paper's code.

Source: Wan et al. 2023, `generate_instruction.py` (`parse_extend_response`, example parsing
and `post_process` filters); reference/seed-algorithms.md §3.5. Pure functions: every parsed
piece comes back with a Verdict, so nothing a model said is dropped without a reason.

Where we differ from the paper's code, on purpose:
* blocks are read by their markers ("New subtask:", "Reason:", "Examples:") instead of by
  position in a flat split, so one block missing its "Reason:" is rejected alone
  (`incomplete_subtask`) instead of shifting every later field into the wrong slot;
* enrich answers lose a leading "Examples:" prefix, not the character set `lstrip` removed;
* math: "Answer: $x$" gets its `\\boxed{}` only when it has that shape; other answers are left
  as written (the paper's slicing corrupted them).
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field

from filters.self_instruct import PAPER_BLACKLIST, InstructionRules, check_instruction
from filters.verdict import Verdict
from schemas.reasons import Reason
from schemas.tree import Example, formalize_taskname

# Alpaca's 18 words: Self-Instruct's list plus video, audio, music, flowchart, diagram.
ALPACA_BLACKLIST: tuple[str, ...] = PAPER_BLACKLIST + (
    "video", "audio", "music", "flowchart", "diagram")
BRAINSTORM_BLACKLIST: tuple[str, ...] = tuple(
    w for w in ALPACA_BLACKLIST if w not in ("map", "maps"))


@dataclass(frozen=True)
class DomainRules:
    """How one domain's answers are laid out and filtered (paper: one class per domain)."""

    numbered: bool  # rewrite: "1. Instruction:" examples; others: bare "Instruction:"
    blacklist: tuple[str, ...]
    length_filter: bool  # math keeps instructions of any length
    box_answers: bool  # math: "Answer: $x$" -> "Answer: $\boxed{x}$"
    min_words: int = 3  # the paper drops < 3 words (Self-Instruct: <= 3)
    max_words: int = 150
    # Self-Instruct's instruction rules as this domain's code applies them: on the raw text, no
    # empty rule of its own, the length rule only where the domain has one.
    rules: InstructionRules = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "rules", InstructionRules(
            min_words=self.min_words if self.length_filter else 0,
            max_words=self.max_words if self.length_filter else sys.maxsize,
            blacklist=self.blacklist, capitalize="none", prefix_case_sensitive=True,
            empty_first=False))


DOMAINS: dict[str, DomainRules] = {
    "rewrite": DomainRules(True, ALPACA_BLACKLIST, True, False),
    "brainstorming": DomainRules(False, BRAINSTORM_BLACKLIST, True, False),
    "math": DomainRules(False, (), False, True),
}


@dataclass(frozen=True)
class ParsedExample:
    position: int
    example: Example  # empty fields when malformed
    verdict: Verdict


@dataclass(frozen=True)
class ParsedSubtask:
    position: int
    name: str
    reason: str
    examples: tuple[ParsedExample, ...]
    verdict: Verdict  # about the block itself (incomplete, unusable name)


_BLOCK_MARK = re.compile(r"(New subtask:|Reason:|Examples:)")
_NUMBERED_SPLIT = re.compile(r"\n+\d+\.\s+")
_FIELDS_3 = re.compile(r"Instruction:|Input:|Output:")
_FIELDS_2 = re.compile(r"Input:|Output:")
_NAME_CHAR = re.compile(r"[A-Za-z0-9]")
# A task name is a short phrase; a longer one is a sentence the model wrote in its place (and
# would not fit in a file name, which the paper's tree format makes of it).
MAX_TASK_NAME_CHARS = 100
_ANSWER = re.compile(r"Answer:\s*\$(?P<inner>.+)\$(?P<tail>\.?)\s*$", re.DOTALL)


def check_example(example: Example, domain: DomainRules) -> tuple[Example, Verdict]:
    """The paper's per-example filters, first failing rule decides; returns the cleaned example.

    The instruction rules are Self-Instruct's (``check_instruction`` under ``domain.rules``);
    the wrapped-input rule is Explore-Instruct's own. A kept example carries no score.
    """
    inst = example.instruction
    inp = "" if example.input.strip().lower() == "<noinput>" else example.input
    out = _box_answer(example.output) if domain.box_answers else example.output
    cleaned = Example(inst, inp, out)
    verdict = check_instruction(inst, domain.rules)
    if not verdict.keep:
        return cleaned, verdict
    if (inp.startswith("<") and inp.endswith(">")) or (inp.startswith("(") and inp.endswith(")")):
        return cleaned, Verdict.drop(Reason.WRAPPED_INPUT, inp[:40])
    return cleaned, Verdict.ok()


def _box_answer(output: str) -> str:
    if "Answer:" not in output or "\\boxed" in output:
        return output
    head, _, answer = output.rpartition("Answer:")
    match = _ANSWER.match("Answer:" + answer.strip())
    if not match:
        return output  # not "$...$": leave it as written
    return f"{head}Answer: $\\boxed{{{match['inner']}}}${match['tail']}"


def parse_examples(text: str, domain: DomainRules, first_position: int = 0
                   ) -> list[ParsedExample]:
    """Split an examples section into examples and judge each (no truncation handling)."""
    text = text.replace("###", "")
    if domain.numbered:
        pieces = _NUMBERED_SPLIT.split(text)
        want, splitter = 4, _FIELDS_3
    else:
        pieces = text.split("Instruction:")[1:]
        want, splitter = 3, _FIELDS_2
    parsed: list[ParsedExample] = []
    for piece in pieces:
        if not piece.strip():
            continue
        parts = [p.strip() for p in splitter.split(piece)]
        if domain.numbered and len(parts) == 1:
            continue  # prose between numbered items (a preamble): no field, not an example
        position = first_position + len(parsed)
        if len(parts) != want:
            detail = f"{len(parts)} fields, expected {want}: {piece.strip()[:60]!r}"
            parsed.append(ParsedExample(position, Example(piece.strip()),
                                        Verdict.drop(Reason.MALFORMED_EXAMPLE, detail)))
            continue
        cleaned, verdict = check_example(Example(*parts[-3:]), domain)
        parsed.append(ParsedExample(position, cleaned, verdict))
    return parsed


def _drop_last_if_truncated(examples: list[ParsedExample], finish_reason: str | None
                            ) -> list[ParsedExample]:
    if examples and finish_reason == "length":
        last = examples[-1]
        examples[-1] = ParsedExample(last.position, last.example, Verdict.drop(
            Reason.LAST_INSTANCE_TRUNCATED, "finish_reason=length"))
    return examples


def parse_enrich_response(text: str, finish_reason: str | None, domain: DomainRules
                          ) -> list[ParsedExample]:
    """An enrich answer: examples of one node; the last one dropped if cut at the limit."""
    body = text.lstrip()
    if body.startswith("Examples:"):
        body = body[len("Examples:"):]
    return _drop_last_if_truncated(parse_examples("\n" + body, domain), finish_reason)


def parse_extend_response(text: str, finish_reason: str | None, domain: DomainRules
                          ) -> list[ParsedSubtask]:
    """An extend answer: new subtasks, each with a reason and its examples.

    Text before the first "New subtask:" is ignored, as in the paper. A cut answer loses its
    last example (the paper's rule); its last block, if cut before "Examples:", is incomplete.
    """
    tokens = _BLOCK_MARK.split(text.replace("###", "").replace("Example:", "Examples:"))
    blocks: list[dict[str, str]] = []
    for marker, value in zip(tokens[1::2], tokens[2::2], strict=True):
        if marker == "New subtask:":
            blocks.append({"name": value})
        elif blocks:
            blocks[-1].setdefault(marker, value)  # a repeated marker keeps the first value
    subtasks = []
    position = 0
    for i, block in enumerate(blocks):
        name = block["name"].strip()
        reason = block.get("Reason:", "").strip()
        examples = parse_examples(block.get("Examples:", ""), domain, position)
        position += len(examples)
        if "Reason:" not in block or "Examples:" not in block:
            missing = [m for m in ("Reason:", "Examples:") if m not in block]
            verdict = Verdict.drop(Reason.INCOMPLETE_SUBTASK, f"missing {', '.join(missing)}")
        elif not _NAME_CHAR.search(name):
            verdict = Verdict.drop(Reason.INVALID_TASK_NAME, repr(name[:40]))
        elif len(formalize_taskname(name)) > MAX_TASK_NAME_CHARS:
            verdict = Verdict.drop(Reason.INVALID_TASK_NAME, f"{len(name)} characters: "
                                   f"{name[:40]!r}...", len(name))
        else:
            verdict = Verdict.ok()
        subtasks.append(ParsedSubtask(i, name, reason, tuple(examples), verdict))
    if subtasks and finish_reason == "length":
        last = subtasks[-1]
        cut = _drop_last_if_truncated(list(last.examples), finish_reason)
        subtasks[-1] = ParsedSubtask(last.position, last.name, last.reason, tuple(cut),
                                     last.verdict)
    return subtasks

