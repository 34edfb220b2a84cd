"""Rule filters for any instruction data: whitespace normalization, empty, overlong, illegal words.

Source: the rule-based cleaning in EcomGPT's data construction (illegal-word lists, overlong
and empty instances, whitespace normalization), written as pure functions: normalization
returns a new record, the check returns a verdict with a reason code and the deciding score.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from filters.verdict import Verdict
from schemas import InstructionRecord, Reason

_SPACES = re.compile(r"[^\S\n]+")  # runs of whitespace other than newlines
_BLANK_LINES = re.compile(r"\n{3,}")


def normalize_whitespace(text: str) -> str:
    """Unify line ends, collapse runs of spaces/tabs, trim lines, keep at most one blank line."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\u00a0", " ")
    lines = [_SPACES.sub(" ", line).strip() for line in text.split("\n")]
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


@dataclass(frozen=True, slots=True)
class RuleConfig:
    """Thresholds of the rule filters; an empty `illegal_words` disables that rule."""

    illegal_words: tuple[str, ...] = ()
    max_chars: int = 8000  # instruction + input + output
    require_output: bool = True
    normalize: bool = True
    pattern: re.Pattern[str] | None = field(init=False, default=None, repr=False,
                                            compare=False)

    def __post_init__(self) -> None:
        if self.max_chars < 1:
            raise ValueError("max_chars must be >= 1")
        words = [w.strip() for w in self.illegal_words if w.strip()]
        if words:
            alternatives = "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
            pattern = re.compile(rf"(?<!\w)({alternatives})(?!\w)", re.IGNORECASE)
            object.__setattr__(self, "pattern", pattern)


def normalize_record(record: InstructionRecord) -> InstructionRecord:
    return replace(record, instruction=normalize_whitespace(record.instruction),
                   input=normalize_whitespace(record.input),
                   output=normalize_whitespace(record.output))


def check_rules(record: InstructionRecord, cfg: RuleConfig) -> Verdict:
    """Empty instruction, empty output, overlong instance, illegal word; first failure decides."""
    if not record.instruction.strip():
        return Verdict.drop(Reason.EMPTY_INSTRUCTION)
    if cfg.require_output and not record.output.strip():
        return Verdict.drop(Reason.EMPTY_OUTPUT)
    size = len(record.instruction) + len(record.input) + len(record.output)
    if size > cfg.max_chars:
        return Verdict.drop(Reason.OVERLONG_INSTANCE, f"{size} chars > {cfg.max_chars}", size)
    if cfg.pattern is not None:
        for text in (record.instruction, record.input, record.output):
            hit = cfg.pattern.search(text)
            if hit:
                return Verdict.drop(Reason.ILLEGAL_WORD, hit.group(0).lower())
    return Verdict.ok(size)


def judge(record: InstructionRecord, cfg: RuleConfig) -> tuple[InstructionRecord, Verdict]:
    """Normalize (if configured), then check; the stored record is the normalized one."""
    if cfg.normalize:
        record = normalize_record(record)
    return record, check_rules(record, cfg)
