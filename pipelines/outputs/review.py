"""The human secondary check: a person marks each row of a run's audit sample good, bad or skip.

EcomGPT has a person look at a random sample of every source; the run already writes that
sample (pipelines/outputs/audit.py, `RUN_DIR/audit/<source>.jsonl`). This module reads it,
keeps the verdicts and writes the review page (pipelines/outputs/review_page.py); the local
server that the page talks to is pipelines/outputs/review_server.py.

Verdicts live in `RUN_DIR/review/verdicts.jsonl`, one JSON object a line, appended (fsync'ed)
and never rewritten, so a crash loses at most the line being written and reviewing resumes
anywhere; that unfinished line is set aside, never fatal (pipelines/outputs/review_log.py):

    {"id", "stage", "source", "verdict", "reason", "instruction", "input", "output", "at"}

plus `messages` ([{role, content}], every turn) when the row is a dialogue.

`verdict` is "good", "bad" or "skip"; the last line for an id wins. An undo appends a line
whose verdict is "undone": the row is unreviewed again. Read the log with `read_verdicts`
(it applies both rules) rather than line by line.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from pipelines.errors import InputError
from pipelines.outputs.confine import inside
from pipelines.outputs.review_log import append_text, read_text, torn_path

log = logging.getLogger(__name__)

AUDIT_DIR: Final = "audit"
REVIEW_DIR: Final = "review"
VERDICTS_FILE: Final = "verdicts.jsonl"
PAGE_FILE: Final = "index.html"
VERDICTS: Final = ("good", "bad", "skip")
UNDONE: Final = "undone"  # withdraws the id's earlier verdict
TEXT_FIELDS: Final = ("instruction", "input", "output")
MAX_REASON: Final = 2000  # characters; a reason is a note, not a document
# line breaks to str.splitlines() that json.dumps(ensure_ascii=False) leaves raw
_LINE_BREAKS: Final = {ord(c): f"\\u{ord(c):04x}" for c in "\x85\u2028\u2029"}


@dataclasses.dataclass(frozen=True, slots=True)
class SampleRow:
    """One row of the audit sample; `extra` holds whatever else the audit line carried
    (round, generator, scores ...), shown beside the text."""

    id: str
    source: str
    stage: str
    instruction: str
    input: str
    output: str
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, slots=True)
class ReviewVerdict:
    """One line of verdicts.jsonl."""

    id: str
    stage: str
    source: str
    verdict: str
    reason: str
    instruction: str
    input: str
    output: str
    at: str
    # a dialogue's every turn as (role, content), when the row is one: what the person read
    # and judged, of which instruction and output hold only the first exchange
    messages: tuple[tuple[str, str], ...] | None = None

    def to_json(self) -> str:
        """One line that every line splitter agrees on: text stays readable (not \\u-escaped)
        except the characters `str.splitlines` would break a line at. `messages` is written
        only for a dialogue."""
        item: dict[str, Any] = dataclasses.asdict(self)
        if self.messages is None:
            del item["messages"]
        else:
            item["messages"] = [{"role": r, "content": c} for r, c in self.messages]
        return json.dumps(item, ensure_ascii=False).translate(_LINE_BREAKS)


def verdicts_path(run_dir: Path) -> Path:
    return Path(run_dir) / REVIEW_DIR / VERDICTS_FILE


def now() -> str:
    """UTC time in the format the page's `Date.toISOString()` writes, so times compare as
    strings."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# -- the audit sample ------------------------------------------------------------------------

def read_sample(run_dir: Path) -> list[SampleRow]:
    """Every row of `RUN_DIR/audit/*.jsonl`, sources in name order, rows in file order."""
    files = sorted((Path(run_dir) / AUDIT_DIR).glob("*.jsonl"))
    if not files:
        raise InputError(f"{run_dir}: no audit sample ({AUDIT_DIR}/<source>.jsonl); it is "
                         "written when the run's audit_per_source is above 0")
    rows: list[SampleRow] = []
    for path in files:
        for number, item in _json_lines(path):
            where = f"{path}:{number}"
            texts = {f: _text(item, f, where) for f in ("id", "stage", *TEXT_FIELDS)}
            extra = {k: v for k, v in item.items() if k not in texts}
            rows.append(SampleRow(source=path.stem, extra=extra, **texts))
    seen: set[str] = set()
    for row in rows:
        if row.id in seen:
            raise InputError(f"{run_dir}/{AUDIT_DIR}: id {row.id!r} appears twice")
        seen.add(row.id)
    return rows


def _json_lines(path: Path) -> Iterable[tuple[int, dict[str, Any]]]:
    """(line number, object) per non-blank line; anything else is one error naming file:line."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read: {exc}") from exc
    # "\n" only: str.splitlines() would also split inside a text holding U+2028 or \x0b
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}:{number}: not JSON: {exc.msg}") from exc
        if not isinstance(item, dict):
            raise InputError(f"{path}:{number}: expected a JSON object")
        yield number, item


def _text(item: Mapping[str, Any], field: str, where: str) -> str:
    value = item.get(field)
    if not isinstance(value, str):
        raise InputError(f"{where}: field {field!r} must be a string, got {value!r:.60}")
    return value


# -- verdicts --------------------------------------------------------------------------------

def parse_verdict(item: Mapping[str, Any], where: str) -> ReviewVerdict:
    """A verdicts.jsonl object checked field by field; `where` (file:line) names bad input."""
    values: dict[str, Any] = {f.name: _text(item, f.name, where)
                              for f in dataclasses.fields(ReviewVerdict) if f.name != "messages"}
    values["messages"] = _messages(item.get("messages"), where)
    if values["verdict"] not in (*VERDICTS, UNDONE):
        raise InputError(f"{where}: field 'verdict' must be one of "
                         f"{', '.join((*VERDICTS, UNDONE))}, got {values['verdict']!r:.60}")
    if len(values["reason"]) > MAX_REASON:
        raise InputError(f"{where}: field 'reason' is longer than {MAX_REASON} characters")
    return ReviewVerdict(**values)


def _messages(value: Any, where: str) -> tuple[tuple[str, str], ...] | None:
    """A dialogue's turns from a line's or an audit row's `messages`, checked."""
    if value is None:
        return None
    if not isinstance(value, list) or not all(
            isinstance(m, dict) and isinstance(m.get("role"), str)
            and isinstance(m.get("content"), str) for m in value):
        raise InputError(f"{where}: field 'messages' must be a list of {{role, content}} "
                         "strings")
    return tuple((m["role"], m["content"]) for m in value)


def read_log(path: Path) -> list[ReviewVerdict]:
    """Every verdict line of a log, in order (an absent file is an empty log). An unfinished
    last line (a crash mid-write) is set aside with a warning, never fatal; so is the torn
    part of a line that an older version fused with the next verdict, whose verdict is kept.
    Any other bad line is an error naming file:line."""
    path = Path(path)
    text = read_text(path, _whole)
    if text is None:
        return []
    notice = text.torn_notice(path)
    if notice:
        log.warning("%s", notice)
    return [_parse_line(path, number, line) for number, line in text.lines if line.strip()]


def log_notice(run_dir: Path) -> str | None:
    """What a reader of the run's log should be told (an unfinished last line), or None."""
    path = verdicts_path(run_dir)
    text = read_text(path, _whole)
    return text.torn_notice(path) if text else None


def _whole(raw: bytes) -> bool:
    """Whether a last line without its "\\n" is a complete verdict (a hand-edited log), not a
    write cut short."""
    try:
        item = json.loads(raw.decode("utf-8"))
        return isinstance(item, dict) and bool(parse_verdict(item, "last line"))
    except (ValueError, InputError):
        return False


def _parse_line(path: Path, number: int, line: str) -> ReviewVerdict:
    where = f"{path}:{number}"
    try:
        item = json.loads(line)
    except json.JSONDecodeError as exc:
        fused = _unfuse(line)
        if fused is None:
            raise InputError(f"{where}: not JSON: {exc.msg}") from exc
        log.warning("%s: an unfinished line (%d characters) fused with the next verdict is set "
                    "aside; the verdict after it is kept", where, fused[0])
        item = fused[1]
    if not isinstance(item, dict):
        raise InputError(f"{where}: expected a JSON object")
    return parse_verdict(item, where)


def _unfuse(line: str) -> tuple[int, dict[str, Any]] | None:
    """(torn length, verdict) when `line` is a torn write followed by a whole verdict line, as
    appends before the torn-line fix wrote them; None when no such split exists."""
    start = line.find('{"id"', 1)
    while start > 0:
        try:
            item = json.loads(line[start:])
        except json.JSONDecodeError:
            item = None
        if isinstance(item, dict) and item.get("verdict") in (*VERDICTS, UNDONE):
            return start, item
        start = line.find('{"id"', start + 1)
    return None


def effective(lines: Iterable[ReviewVerdict]) -> dict[str, ReviewVerdict]:
    """The verdict in force per id: the last line wins, and "undone" leaves the id unreviewed."""
    return {i: v for i, v in _latest(lines).items() if v.verdict != UNDONE}


def read_verdicts(run_dir: Path) -> dict[str, ReviewVerdict]:
    """The verdicts in force for a run, by row id."""
    return effective(read_log(verdicts_path(run_dir)))


def make_verdict(row: SampleRow, verdict: str, reason: str = "", at: str | None = None,
                 ) -> ReviewVerdict:
    """A verdict line for a sample row; the texts come from the sample, never the page."""
    return parse_verdict({"id": row.id, "stage": row.stage, "source": row.source,
                          "verdict": verdict, "reason": reason.strip(),
                          "instruction": row.instruction, "input": row.input,
                          "output": row.output, "at": at or now(),
                          "messages": row.extra.get("messages")}, f"verdict for {row.id}")


def append_verdicts(run_dir: Path, lines: Sequence[ReviewVerdict]) -> None:
    """Append lines to verdicts.jsonl in one write, fsync'ed before returning; never through a
    link (pipelines/outputs/confine.py for the folders, O_NOFOLLOW for the file), and always
    on a new line (pipelines/outputs/review_log.py sets an unfinished last line aside)."""
    if not lines:
        return
    path = inside(run_dir, REVIEW_DIR, VERDICTS_FILE)
    path.parent.mkdir(parents=True, exist_ok=True)
    torn = append_text(path, "".join(line.to_json() + "\n" for line in lines), _whole)
    if torn:
        log.warning("%s: an unfinished last line (%d bytes, a write cut short) was moved to %s "
                    "before appending", path, len(torn), torn_path(path))


def import_verdicts(run_dir: Path, source: Path) -> int:
    """Append the verdicts of an exported file (the page's "export verdicts" button) to the
    run's log and return how many were new. A line gives the id, verdict, reason and time;
    its texts are taken from the run's audit sample, never from the file. The whole file is
    checked first, so bad input leaves the log untouched; lines already in force are not
    appended again."""
    sample = {row.id: row for row in read_sample(run_dir)}
    incoming, differ = [], []
    for number, item in _json_lines(Path(source)):
        line = parse_verdict(item, f"{source}:{number}")
        row = sample.get(line.id)
        if row is None:
            raise InputError(f"{source}:{number}: id {line.id!r} is not in {run_dir}'s "
                             "audit sample (a verdict file from another run?)")
        if (line.stage, line.source) != (row.stage, row.source):
            raise InputError(f"{source}:{number}: id {line.id!r} is stage {row.stage!r} of "
                             f"source {row.source!r} in this run, not {line.stage!r} of "
                             f"{line.source!r}")
        # Only the decision comes from the file: its texts could be edited (a forged output
        # would become a training label through train-classifier), so they are the sample's.
        kept = make_verdict(row, line.verdict, line.reason, at=line.at)
        if any(getattr(line, f) != getattr(kept, f) for f in TEXT_FIELDS) or (
                line.messages is not None and line.messages != kept.messages):
            differ.append(f"{source}:{number}")
        incoming.append(kept)
    if differ:
        log.warning("%d imported line(s) carry texts that differ from %s's audit sample (%s%s); "
                    "their verdicts are kept with the sample's texts", len(differ), run_dir,
                    ", ".join(differ[:3]), ", ..." if len(differ) > 3 else "")
    state = _latest(read_log(verdicts_path(run_dir)))
    new = []
    for line in sorted(incoming, key=lambda v: v.at):  # stable: file order within one time
        current = state.get(line.id)
        if current == line or (current is None and line.verdict == UNDONE):
            continue
        if current is not None and current.at > line.at:
            continue  # the log already holds a later decision for this row
        state[line.id] = line
        new.append(line)
    append_verdicts(run_dir, new)
    return len(new)


def _latest(lines: Iterable[ReviewVerdict]) -> dict[str, ReviewVerdict]:
    latest: dict[str, ReviewVerdict] = {}
    for line in lines:
        latest[line.id] = line
    return latest
