"""The project's one JSON Lines reader: objects per line, errors naming file:line.

Why one: four copies read JSON Lines each their own way, and the ones built on
`str.splitlines()` broke a line inside a text holding U+2028, U+2029, U+0085, \\x0b, \\x0c or
\\x1c-\\x1e (all of which `json.dumps(..., ensure_ascii=False)` leaves raw), so a labels file or
exported review verdicts failed as "not JSON". Here a line ends at "\\n" only (the JSON Lines
definition); each line is decoded as UTF-8 on its own, so an error says which line, and the
file is streamed, never held whole.

Standard library only and no project imports: `schemas` is the lowest layer, so every reader
(input datasets, seed tasks, labels, review verdicts, journals) can use it. A caller that
reports errors as its own type passes it as `error` (e.g. the CLI's InputError).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Final

#: Ends the message of a last line set aside as torn (`torn=`).
TORN_SUFFIX: Final = " (an unfinished last line, set aside)"


class JsonLinesError(ValueError):
    """A line that is not a JSON object; the message starts with `<file>:<line>:`."""


def parse_json_line(line: str | bytes, where: str,
                    error: type[Exception] = JsonLinesError) -> dict[str, Any] | None:
    """One line's object, None for a blank line, or `error` naming `where` and the problem."""
    if isinstance(line, bytes):
        try:
            line = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise error(f"{where}: not valid UTF-8 (byte {exc.start})") from None
    if not line.strip():
        return None
    try:
        value = json.loads(line)
    except json.JSONDecodeError as exc:
        raise error(f"{where}: malformed JSON ({exc.msg} at column {exc.colno})") from None
    except RecursionError:
        raise error(f"{where}: malformed JSON (nested too deeply)") from None
    if not isinstance(value, dict):
        raise error(f"{where}: expected a JSON object, got {type(value).__name__}")
    return value


def iter_json_lines(lines: Iterable[bytes | str], name: str,
                    error: type[Exception] = JsonLinesError, *,
                    torn: list[str] | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """(1-based line number, object) for each non-blank line of `lines`.

    `lines` must be split at "\\n" only: a binary file's iteration is (`open(p, "rb")`,
    Beam's FileSystems.open); use `split_lines` for text already in memory.

    `torn`: for an append-only log, whose writer may crash mid-line. When given, a last line
    that has no "\\n" after it and does not parse is not an error: its message goes into
    `torn` (for the caller to say, and to start its next append on a new line). Without it,
    or anywhere before the last line, a bad line is `error`.
    """
    for number, line in enumerate(lines, 1):
        where = f"{name}:{number}"
        try:
            value = parse_json_line(line, where, error)
        except Exception as exc:
            unterminated = not line.endswith(b"\n" if isinstance(line, bytes) else "\n")
            if torn is None or not isinstance(exc, error) or not unterminated:
                raise
            torn.append(f"{exc}{TORN_SUFFIX}")
            return
        if value is not None:
            yield number, value


def split_lines(data: bytes | str) -> list[Any]:
    """`data` cut after each "\\n" (kept, as a file's iteration keeps it), never at the other
    line breaks `splitlines` knows."""
    newline: Any = b"\n" if isinstance(data, bytes) else "\n"
    parts = data.split(newline)
    return [part + newline for part in parts[:-1]] + parts[-1:]


def read_json_lines(path: Path | str, error: type[Exception] = JsonLinesError, *,
                    torn: list[str] | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) per non-blank line of a local file, streamed; a file that cannot
    be opened is `error` naming it. `torn`: as in `iter_json_lines`."""
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed below, after the generator ends
    except OSError as exc:
        raise error(f"{path}: cannot read ({exc.strerror or exc})") from None
    with handle:
        yield from iter_json_lines(handle, str(path), error, torn=torn)
