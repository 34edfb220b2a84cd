"""Self-Instruct's response parsing and rule filters, in the order of the paper's code.

Source: Wang et al. 2023, `bootstrap_instructions.py::post_process_gpt3_response` (instruction
filters) and `prepare_for_finetuning.py` (instance parsing and filters); see
reference/seed-algorithms.md §1.3 and §1.6. Every function is pure and returns verdicts with a
reason code instead of silently skipping, so the Beam shell can count and keep every drop.
"""

from __future__ import annotations

import random
import re
import string
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from filters.verdict import Verdict
from schemas.reasons import Reason

CapitalizeMode = Literal["paper", "first_letter", "none"]

PAPER_BLACKLIST: tuple[str, ...] = (
    "image", "images", "graph", "graphs", "picture", "pictures", "file", "files",
    "map", "maps", "draw", "plot", "go to",
)  # fmt: skip

_ITEM_SPLIT = re.compile(r"\n\d+\s?\. ")
_WHITESPACE = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class InstructionRules:
    """The instruction heuristics and their paper defaults.

    `capitalize`: the paper calls `str.capitalize()`, which also lower-cases every other
    character ("Use SQL in Python" -> "Use sql in python"). Our default, "first_letter", only
    upper-cases the first character, so names and code keep their case; every keep/drop
    decision is still the paper's, because every rule is checked on the paper's capitalized
    form (see `check_instruction`). "paper" reproduces the stored text too.
    """

    min_words: int = 4  # the paper keeps 3 < words <= 150
    max_words: int = 150
    blacklist: tuple[str, ...] = PAPER_BLACKLIST
    forbidden_prefix: str = "Write a program"
    capitalize: CapitalizeMode = "first_letter"
    # Self-Instruct's code tests every rule on the capitalized text; Ensemble-Instruct's code
    # (and Explore-Instruct's) on the raw text ("write a program ..." passes there). False: the
    # former.
    prefix_case_sensitive: bool = False
    # Self-Instruct's code drops an empty piece before any rule. Explore-Instruct's code has no
    # empty rule: an empty instruction meets its length rule (or, without one, our guard before
    # the first-character rules). False: the latter order.
    empty_first: bool = True
    blacklist_pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.min_words < 0 or self.max_words < self.min_words:
            raise ValueError(f"bad word bounds: min_words={self.min_words}, "
                             f"max_words={self.max_words}")
        words = "|".join(re.escape(w) for w in self.blacklist) or r"(?!x)x"
        pattern = re.compile(rf"\b({words})\b", re.IGNORECASE)
        object.__setattr__(self, "blacklist_pattern", pattern)


def normalize_instruction(text: str, mode: CapitalizeMode) -> str:
    """Collapse whitespace and apply the configured capitalization."""
    text = _WHITESPACE.sub(" ", text).strip()
    if mode == "paper":
        return text.capitalize()
    if mode == "first_letter":
        return text[:1].upper() + text[1:]
    return text


def split_numbered_list(completion: str) -> list[str]:
    """Split a numbered-list continuation ("...\\n10. ...\\n11. ...") into items.

    The first piece continues the prompt's open item ("9."), exactly as in the paper.
    """
    return [piece for piece in _ITEM_SPLIT.split(completion)]


def check_instruction(instruction: str, rules: InstructionRules) -> Verdict:
    """Apply the paper's instruction filters in order; the first failing rule decides.

    Unless `prefix_case_sensitive`, the rules see `str.capitalize()` of the text, as the
    paper's code did, whatever case the stored text keeps. That makes `first_letter` decide
    exactly like `paper` even where case matters beyond ASCII: "FİLES".lower() is "fi̇les"
    (with a combining dot, so not the word "files"), while the regex's own case folding maps
    "İ" to "i" and would find "files" in the uncapitalized text.
    """
    if not instruction and rules.empty_first:
        return Verdict.drop(Reason.EMPTY_INSTRUCTION)
    text = instruction if rules.prefix_case_sensitive else instruction.capitalize()
    n_words = len(text.split())
    if n_words < rules.min_words:
        return Verdict.drop(Reason.TOO_SHORT, f"{n_words} words < {rules.min_words}", n_words)
    if n_words > rules.max_words:
        return Verdict.drop(Reason.TOO_LONG, f"{n_words} words > {rules.max_words}", n_words)
    hit = rules.blacklist_pattern.search(text)
    if hit:
        return Verdict.drop(Reason.BLACKLISTED_KEYWORD, hit.group(0).lower())
    if text.startswith(rules.forbidden_prefix):
        return Verdict.drop(Reason.STARTS_WITH_WRITE_A_PROGRAM)
    if not text:
        return Verdict.drop(Reason.EMPTY_INSTRUCTION)
    if text[0] in string.punctuation:
        return Verdict.drop(Reason.STARTS_WITH_PUNCTUATION, text[0])
    if not text[0].isascii():
        return Verdict.drop(Reason.STARTS_WITH_NON_ASCII, text[0])
    return Verdict.ok(n_words)


@dataclass(frozen=True, slots=True)
class ParsedInstruction:
    position: int
    text: str
    verdict: Verdict


def parse_instruction_response(
    completion: str, finish_reason: str | None, rules: InstructionRules
) -> list[ParsedInstruction]:
    """Turn one generator response into instructions, each with a verdict.

    A response stopped at the length limit is discarded whole, as in the paper; we still
    return its pieces (rejected as `response_truncated`) so the drop is visible.
    """
    pieces = [normalize_instruction(p, rules.capitalize) for p in split_numbered_list(completion)]
    pieces = [p for p in pieces if p]
    if not pieces:
        return [ParsedInstruction(0, completion.strip(), Verdict.drop(Reason.EMPTY_RESPONSE))]
    if finish_reason == "length":
        truncated = Verdict.drop(Reason.RESPONSE_TRUNCATED, "finish_reason=length")
        return [ParsedInstruction(i, p, truncated) for i, p in enumerate(pieces)]
    return [ParsedInstruction(i, p, check_instruction(p, rules)) for i, p in enumerate(pieces)]


# --- classification identification ---------------------------------------------------------

def parse_is_classification(answer: str) -> bool:
    """The paper's rule: the stripped answer must be exactly Yes/yes/YES; anything else is no."""
    return answer.strip() in {"Yes", "yes", "YES"}


# --- instances ------------------------------------------------------------------------------

_OUTPUT_MARK = re.compile(r"Output\s*\d*\s*:")
_INPUT_MARK = re.compile(r"Input\s*\d*\s*:")
_INPUT_PREFIX = re.compile(r"^Input\s*\d*\s*:")
_EXAMPLE_MARK = re.compile(r"Example\s?\d*\.?")


@dataclass(frozen=True, slots=True)
class ParsedInstance:
    position: int
    input: str
    output: str
    verdict: Verdict


def _split_input_output(text: str) -> tuple[str, str]:
    if _OUTPUT_MARK.search(text):
        parts = _OUTPUT_MARK.split(text)
        inp, out = parts[0].strip(), parts[1].strip()
    else:
        inp, out = "", text.strip()
    if _INPUT_MARK.search(out):  # several pairs in one block: keep the first output
        out = _INPUT_MARK.split(out)[0].strip()
    inp = _INPUT_PREFIX.sub("", inp).strip()
    return inp, out


def _raw_generation_instances(raw: str) -> list[tuple[str, str]]:
    raw = raw.strip()
    if _EXAMPLE_MARK.search(raw):
        blocks = [b.strip() for b in _EXAMPLE_MARK.split(raw) if b.strip()]
        return [_split_input_output(b) for b in blocks]
    if _OUTPUT_MARK.search(raw):
        return [_split_input_output(raw)]
    return []


def _raw_classification_instances(raw: str) -> list[tuple[str, str]]:
    if "Class label:" not in raw:
        return []
    pairs = []
    for chunk in raw.split("Class label:")[1:]:
        fields = chunk.strip().split("\n", 1)
        label = fields[0].strip()
        inp = fields[1].strip() if len(fields) == 2 else ""
        pairs.append((inp, label))
    return pairs


def _invalid(inp: str, out: str) -> Verdict | None:
    if inp == out:
        return Verdict.drop(Reason.INPUT_EQUALS_OUTPUT)
    if out == "":
        return Verdict.drop(Reason.EMPTY_OUTPUT)
    if inp.strip().endswith(":") or out.strip().endswith(":"):
        return Verdict.drop(Reason.FIELD_ENDS_WITH_COLON)
    return None


def parse_instances(
    raw: str,
    finish_reason: str | None,
    *,
    is_classification: bool,
    max_instances: int = 5,
    rng_seed: int = 0,
) -> list[ParsedInstance]:
    """Parse and filter one task's instances; every parsed pair comes back with a verdict.

    Order of the paper's code: drop the last pair when the response hit the length limit;
    drop invalid pairs; if two kept pairs share a non-empty input with different outputs,
    drop every pair of the task; drop exact duplicates; keep a random sample of at most
    `max_instances`. We keep first occurrences and sample with a seeded RNG, where the paper's
    `list(set(...))` made the choice depend on PYTHONHASHSEED.
    """
    pairs = (_raw_classification_instances(raw) if is_classification
             else _raw_generation_instances(raw))
    verdicts: list[Verdict | None] = [None] * len(pairs)
    if pairs and finish_reason == "length":
        verdicts[-1] = Verdict.drop(Reason.LAST_INSTANCE_TRUNCATED, "finish_reason=length")
    for i, (inp, out) in enumerate(pairs):
        if verdicts[i] is None:
            verdicts[i] = _invalid(inp, out)
    alive = [i for i, v in enumerate(verdicts) if v is None]
    if _has_conflicting_outputs([pairs[i] for i in alive]):
        for i in alive:
            verdicts[i] = Verdict.drop(Reason.CONFLICTING_OUTPUTS, "same input, other output")
        alive = []
    seen: set[tuple[str, str]] = set()
    unique = []
    for i in alive:
        if pairs[i] in seen:
            verdicts[i] = Verdict.drop(Reason.DUPLICATE_INSTANCE)
        else:
            seen.add(pairs[i])
            unique.append(i)
    if len(unique) > max_instances:
        chosen = set(random.Random(rng_seed).sample(unique, max_instances))
        for i in unique:
            if i not in chosen:
                verdicts[i] = Verdict.drop(Reason.OVER_INSTANCE_LIMIT, f"> {max_instances}")
    return [
        ParsedInstance(i, inp, out, verdicts[i] or Verdict.ok())
        for i, (inp, out) in enumerate(pairs)
    ]


def _has_conflicting_outputs(pairs: Sequence[tuple[str, str]]) -> bool:
    outputs_by_input: dict[str, str] = {}
    for inp, out in pairs:
        if inp == "":
            continue
        if outputs_by_input.setdefault(inp, out) != out:
            return True
    return False
