"""Ensemble-Instruct's valid-format filter: raw instance text -> (instruction, input, output).

Source: `IBM/ensemble-instruct` `sample_instances.py` (reference/seed-algorithms.md §2.4). The
generator continues a prompt that ends with ``instruction: <task>`` and is asked for
``input: ...`` / ``output: ...`` lines closed by ``|EoS|``. The paper's code reads the response
like this, and so do we by default:

* the text is stripped and split into blocks at blank lines (the code first replaces every
  ``"\\n\\n"`` by ``"^"`` and splits at ``"^"``, so a literal caret also ends a block: kept);
* block 0 is the instance. Its kind is decided by its *content*, not by the task's type: if its
  first line contains ``input:`` it is an input-output instance (type A) and its second line
  must contain ``output:``; else if the first line contains ``output:`` it is output-only
  (type B). The markers and ``|EoS|`` are removed (every occurrence in the line), and the
  instance is kept iff the output has a non-whitespace character;
* **single-line truncation**: the input and the output are the *first line only* of their
  field, so a multi-line output (code, lists, letters) is cut to its first line, and
  ``output:`` followed by a line break gives an empty output (dropped). ``single_line=False``
  keeps every line of each field up to the first ``|EoS|`` instead (our option, not the paper);
* later blocks are "harvested" as extra instances when their first line contains
  ``instruction:`` and the marker of the branch (``input:``/``output:``), the instruction has
  more than 5 words and the field lines follow. Because a later block starts with
  ``instruction:`` the branch tests rarely pass: no sample in the released run was harvested.
  We keep the rule (it is the paper's) and mark such rows ``harvested``.

Where the paper's code crashes (an empty block, e.g. an empty response) we return a rejection.
Every outcome is a ``ParsedSample`` with a verdict, so a drop always has a reason code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from filters.verdict import Verdict
from schemas.reasons import Reason

__all__ = ["EOS", "InstanceKind", "ParsedSample", "parse_raw_instances", "strip_eos"]

InstanceKind = Literal["input_output", "output_only"]
EOS = "|EoS|"


@dataclass(frozen=True, slots=True)
class ParsedSample:
    position: int  # the block it came from (0: the instance itself)
    kind: InstanceKind | None  # None when block 0 matched neither format
    instruction: str
    input: str
    output: str
    verdict: Verdict
    harvested: bool = False


def strip_eos(text: str) -> str:
    """Remove every ``|EoS|`` and surrounding whitespace (the code's cleanup of a field)."""
    return text.replace(EOS, "").strip()


def _field(line: str, marker: str) -> str:
    return strip_eos(line.strip().replace(marker, "").strip())


def _lines_field(first: str, rest: list[str], marker: str) -> str:
    """A field spanning several lines, cut at the first ``|EoS|`` (``single_line=False``)."""
    text = "\n".join([first.strip().replace(marker, "")] + rest)
    return text.split(EOS, 1)[0].strip()


def _sample(position: int, kind: InstanceKind, instruction: str, inp: str, out: str,
            harvested: bool = False) -> ParsedSample:
    verdict = Verdict.ok() if out.split() else Verdict.drop(Reason.EMPTY_OUTPUT)
    return ParsedSample(position, kind, instruction, inp, out, verdict, harvested)


def _first_block(lines: list[str], instruction: str, single_line: bool) -> ParsedSample:
    head = lines[0]
    if "input:" in head:
        if single_line:
            if len(lines) > 1 and "output:" in lines[1]:
                return _sample(0, "input_output", instruction, _field(head, "input:"),
                               _field(lines[1], "output:"))
        else:
            k = next((i for i in range(1, len(lines)) if "output:" in lines[i]), None)
            if k is not None:
                return _sample(0, "input_output", instruction,
                               _lines_field(head, lines[1:k], "input:"),
                               _lines_field(lines[k], lines[k + 1:], "output:"))
        return ParsedSample(0, "input_output", instruction, "", "", Verdict.drop(
            Reason.INVALID_FORMAT, "an 'input:' line not followed by an 'output:' line"))
    if "output:" in head:
        out = (_field(head, "output:") if single_line
               else _lines_field(head, lines[1:], "output:"))
        return _sample(0, "output_only", instruction, "", out)
    return ParsedSample(0, None, instruction, "", "", Verdict.drop(
        Reason.INVALID_FORMAT, "the first line has neither 'input:' nor 'output:'"))


def _harvest(position: int, lines: list[str]) -> ParsedSample | None:
    """The code's branch for blocks after the first (see the module docstring)."""
    head = lines[0].strip()
    if "input:" in head:
        if len(lines) > 2 and "instruction:" in head and "input:" in lines[1] \
                and "output:" in lines[2] and len(head.split()) > 5:
            return _sample(position, "input_output", _field(head, "instruction:"),
                           _field(lines[1], "input:"), _field(lines[2], "output:"), True)
    elif "output:" in head:
        if len(lines) > 1 and "instruction:" in head and "output:" in lines[1] \
                and len(head.split()) > 5:
            return _sample(position, "output_only", _field(head, "instruction:"), "",
                           _field(lines[1], "output:"), True)
    return None


def parse_raw_instances(instruction: str, raw: str, *, single_line: bool = True
                        ) -> list[ParsedSample]:
    """Parse one response: block 0 always yields one sample (kept or rejected), later blocks
    only the samples the harvest rule finds. ``instruction`` is the task it answers."""
    instruction = strip_eos(instruction.strip())
    blocks = raw.strip().replace("\n\n", "^").split("^")
    first = blocks[0].splitlines()
    if not first:
        return [ParsedSample(0, None, instruction, "", "", Verdict.drop(Reason.EMPTY_RESPONSE))]
    samples = [_first_block(first, instruction, single_line)]
    for position, block in enumerate(blocks[1:], start=1):
        lines = block.splitlines()
        harvested = _harvest(position, lines) if lines else None
        if harvested is not None:
            samples.append(harvested)
    return samples
