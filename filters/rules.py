"""Rule filters for any instruction data: whitespace normalization, empty, overlong, illegal words.

Source: the rule-based cleaning in EcomGPT's data construction (illegal-word lists, overlong
and empty instances, whitespace normalization), written as pure functions: normalization
returns a new record, the check returns a verdict with a reason code and the deciding score.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace

from filters.verdict import Verdict
from schemas import InstructionRecord, Message, Reason

_FENCE_OPEN = re.compile(r"[ \t]*(`{3,}(?=[^`]*$)|~{3,})")  # ``` info strings have no backtick
# What a line opens with that Markdown reads as structure: indentation, then any blockquote
# markers and list markers with the spaces after them. Kept byte for byte.
_PREFIX = re.compile(r"[ \t\u00a0]*(?:>[ \t]*)*(?:(?:[-*+]|\d{1,9}[.)])[ \t]+)?")
_TRAILING = re.compile(r"[ \t\u00a0]+$")
# A run of spaces between two words of prose: after a word or sentence punctuation, before a
# letter. Runs next to other characters ("x  = 1", "[Y|N]    |", table padding) are left
# alone: in real data they are unfenced code or alignment far more often than stray spaces.
_SPACE_RUN = re.compile(r"(?<=[\w.,;:!?)]) {2,}(?=[^\W\d_])")
_TICKS = re.compile(r"`+")

_PROSE, _FENCED, _INDENTED, _BLANK = "prose", "fenced", "indented", "blank"


def _indent_width(line: str) -> int:
    """Columns of the leading spaces and tabs (a tab counts 4, enough to tell code from prose)."""
    width = 0
    for ch in line:
        if ch == " ":
            width += 1
        elif ch == "\t":
            width += 4
        else:
            break
    return width


def _classify(lines: list[str]) -> list[str]:
    """Per line: inside a fenced block (fence lines included), indented code, blank, or prose.

    A fence opens on any line whose first characters after the indentation are ``` or ~~~
    (any indentation, so fences nested in list items count) and closes on a line of the same
    character, at least as long, and nothing else; an unclosed fence runs to the end, as in
    CommonMark. A line indented four columns or more is treated as indented code even where
    CommonMark would read a list continuation: keeping such a line untouched loses a little
    cleaning, reading code as prose would lose meaning.
    """
    kinds: list[str] = []
    fence = ""
    for line in lines:
        if fence:
            kinds.append(_FENCED)
            stripped = line.strip(" \t")
            if stripped.startswith(fence) and not stripped.strip(fence[0]):
                fence = ""
            continue
        opened = _FENCE_OPEN.match(line)
        if opened:
            fence = opened.group(1)
            kinds.append(_FENCED)
        elif not line.strip(" \t\u00a0"):
            kinds.append(_BLANK)
        elif _indent_width(line) >= 4:
            kinds.append(_INDENTED)
        else:
            kinds.append(_PROSE)
    # Blank lines between two indented-code lines belong to that code block.
    last_code = None
    for i, kind in enumerate(kinds):
        if kind == _INDENTED:
            if last_code is not None and i - last_code > 1:
                for j in range(last_code + 1, i):
                    kinds[j] = _INDENTED
            last_code = i
        elif kind != _BLANK:
            last_code = None
    return kinds


def _collapse_spaces(text: str) -> str:
    """Runs of spaces between words -> one space, except inside inline `code` spans."""
    out: list[str] = []
    pos = 0
    ticks = list(_TICKS.finditer(text))
    i = 0
    while i < len(ticks):
        opening = ticks[i]
        closing = next((t for t in ticks[i + 1:] if len(t.group()) == len(opening.group())),
                       None)
        if closing is None:
            i += 1
            continue
        out.append(_SPACE_RUN.sub(" ", text[pos:opening.start()]))
        out.append(text[opening.start():closing.end()])
        pos = closing.end()
        i = ticks.index(closing) + 1
    out.append(_SPACE_RUN.sub(" ", text[pos:]))
    return "".join(out)


def _prose_line(line: str, hard_break: bool) -> str:
    """Indentation and Markdown markers as they are; NBSP -> space and runs of spaces -> one
    after them; trailing whitespace removed, or exactly two spaces where it was a hard break."""
    body = _TRAILING.sub("", line)
    trailing = line[len(body):]
    prefix = _PREFIX.match(body).group()
    rest = _collapse_spaces(body[len(prefix):].replace("\u00a0", " "))
    keep_break = hard_break and trailing.endswith("  ")
    return prefix + rest + ("  " if keep_break else "")


def normalize_whitespace(text: str) -> str:
    """Remove whitespace that carries no meaning; keep every byte that does.

    EcomGPT's rule is about stray whitespace, not structure, and answers are full of code,
    YAML, Makefiles and nested Markdown lists, where indentation and tabs are the meaning. So:

    * everywhere: ``\\r\\n`` and ``\\r`` become ``\\n``; blank lines at the start and the end of
      the field are removed;
    * fenced blocks (``` or ~~~, fence lines included) and indented code (four columns or
      more, with the blank lines inside it) are kept byte for byte, trailing spaces included;
    * every other line keeps its indentation (spaces, tabs, NBSPs) and its blockquote and list
      markers byte for byte; after them NBSP becomes a space, and a run of spaces between two
      words ("end.  Next") becomes one, except inside inline `code` spans; tabs inside a line
      stay, and so do runs next to symbols: code pasted without a fence at less than four
      columns reads as prose here, and its string literals and alignment must survive;
    * trailing whitespace is removed, except that two or more trailing spaces before a
      non-blank line become exactly two: in Markdown that is a hard line break, so removing it
      would join two lines the author kept apart;
    * outside code, two or more blank lines become one (Markdown renders them the same).

    Idempotent, and the indentation of every non-blank line is unchanged.
    """
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    kinds = _classify(lines)
    out: list[str] = []
    for i, (line, kind) in enumerate(zip(lines, kinds, strict=True)):
        if kind in (_FENCED, _INDENTED):
            out.append(line)
        elif kind == _BLANK:
            if out and out[-1] != "":
                out.append("")
        else:
            following = kinds[i + 1] if i + 1 < len(kinds) else _BLANK
            out.append(_prose_line(line, hard_break=following != _BLANK))
    while out and not out[0].strip(" \t\u00a0"):
        out.pop(0)
    while out and not out[-1].strip(" \t\u00a0"):
        out.pop()
    return "\n".join(out)


@dataclass(frozen=True, slots=True)
class RuleConfig:
    """Thresholds of the rule filters; an empty `illegal_words` disables that rule."""

    illegal_words: tuple[str, ...] = ()
    max_chars: int = 8000  # instruction + input + output
    require_output: bool = True
    normalize: bool = True
    # A multi-turn row whose conversation opens with the assistant's message is a fragment
    # cut from a longer chat (ShareGPT has many): its "first request" is mid-conversation.
    reject_fragments: bool = True
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


TEXT_FIELDS = ("instruction", "input", "output", "messages")


def normalize_record(record: InstructionRecord) -> InstructionRecord:
    """Every text field normalized. A dialogue's turns are normalized and its `output` is
    then taken from them (the first reply), so the exported turns and `output` agree."""
    out = replace(record, instruction=normalize_whitespace(record.instruction),
                  input=normalize_whitespace(record.input),
                  output=normalize_whitespace(record.output))
    if record.messages:
        turns = tuple(Message(m.role, normalize_whitespace(m.content))
                      for m in record.messages)
        reply = next((m.content for m in turns if m.role == "assistant"), out.output)
        out = replace(out, messages=turns, output=reply)
    return out


def changed_fields(before: InstructionRecord, after: InstructionRecord) -> tuple[str, ...]:
    """The text fields normalization changed, so a run can say how much it rewrote."""
    return tuple(name for name in TEXT_FIELDS if getattr(before, name) != getattr(after, name))


def _replies(record: InstructionRecord) -> list[tuple[str, str]]:
    """The texts that must not be empty: the output, or every assistant turn of a dialogue."""
    if record.messages:
        return [(name, text) for (name, text), m in zip(record.texts(), record.messages,
                                                        strict=True) if m.role == "assistant"]
    return [("output", record.output)]


def is_fragment(conversation: str | None) -> bool:
    """Whether a stored conversation (canonical JSON messages) opens, after any system
    message, with the assistant's turn: a piece cut from a longer chat, not a dialogue."""
    if not conversation:
        return False
    roles = [m.get("role") for m in json.loads(conversation) if isinstance(m, dict)]
    first = next((role for role in roles if role != "system"), None)
    return first == "assistant"


def check_rules(record: InstructionRecord, cfg: RuleConfig) -> Verdict:
    """Conversation fragment, empty instruction, empty output, overlong instance, illegal
    word; first failure decides.

    A dialogue is judged turn by turn (`InstructionRecord.texts`) and the failing turn is
    named in the detail: every reply must have text, each turn must fit `max_chars` (the
    dialogue as a whole is bounded by the model context it was generated in; a turn is what
    a trainer's example of one answer holds), and no turn may hold an illegal word.
    """
    if cfg.reject_fragments and is_fragment(record.conversation):
        return Verdict.drop(Reason.CONVERSATION_FRAGMENT,
                            "the conversation opens with the assistant's message")
    if not record.instruction.strip():
        return Verdict.drop(Reason.EMPTY_INSTRUCTION)
    if cfg.require_output:
        for name, text in _replies(record):
            if not text.strip():
                return Verdict.drop(Reason.EMPTY_OUTPUT, "" if name == "output" else name)
    if record.messages:
        sizes = [(name, len(text)) for name, text in record.texts()]
        name, size = max(sizes, key=lambda s: s[1])
        if size > cfg.max_chars:
            return Verdict.drop(Reason.OVERLONG_INSTANCE,
                                f"{name}: {size} chars > {cfg.max_chars}", size)
    else:
        size = len(record.instruction) + len(record.input) + len(record.output)
        if size > cfg.max_chars:
            return Verdict.drop(Reason.OVERLONG_INSTANCE, f"{size} chars > {cfg.max_chars}",
                                size)
    if cfg.pattern is not None:
        for name, text in record.texts():
            hit = cfg.pattern.search(text)
            if hit:
                where = f" in {name}" if record.messages else ""
                return Verdict.drop(Reason.ILLEGAL_WORD, hit.group(0).lower() + where)
    return Verdict.ok(size)


def judge(record: InstructionRecord, cfg: RuleConfig) -> tuple[InstructionRecord, Verdict]:
    """Normalize (if configured), then check; the stored record is the normalized one."""
    if cfg.normalize:
        record = normalize_record(record)
    return record, check_rules(record, cfg)
