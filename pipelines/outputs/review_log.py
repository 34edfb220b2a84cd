"""The verdict log's bytes: read and append review/verdicts.jsonl so that a crash never costs
more than the line being written, and a planted link is never followed.

A person's verdicts are the most expensive bytes a run has, so the file is handled at the
byte level here (pipelines/outputs/review.py turns the lines into verdicts):

- Every verdict is written as one line ending in "\\n" and fsync'ed before the server answers,
  so an answered verdict survives a crash or power cut.
- A crash mid-write leaves an unfinished last line (no "\\n"). Readers set it aside, never fail
  on it, and say so. The next append moves those bytes to `verdicts.torn` beside the log (one
  JSON line each, with their offset and exact bytes) and cuts them off the log before writing,
  so the new verdict starts on a line of its own instead of being fused into the torn one.
  Cutting an unfinished line is the only change ever made to bytes already in the log. A last
  line that lacks only its "\\n" but is whole (`whole` says so: a hand-edited log) is a line
  like any other, and the next append ends it first.
- The log and its side file are opened with O_NOFOLLOW: a symbolic link in
  their place (even one leading inside the run folder, or dangling) is refused with one line.
- Appends hold an exclusive flock, so `instructbeam review --import` and a running review
  server never interleave their lines.
"""

from __future__ import annotations

import base64
import dataclasses
import errno
import fcntl
import json
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from pipelines.errors import InputError

TORN_SUFFIX: Final = ".torn"  # verdicts.jsonl -> verdicts.torn
_CHUNK: Final = 64 * 1024


@dataclasses.dataclass(frozen=True, slots=True)
class LogText:
    """A log's complete lines (1-based line number, text) and its unfinished last line."""

    lines: list[tuple[int, str]]
    torn: bytes = b""

    def torn_notice(self, path: Path) -> str | None:
        """One line saying an unfinished last line was set aside, or None."""
        if not self.torn:
            return None
        return (f"{path}:{len(self.lines) + 1}: an unfinished last line ({len(self.torn)} bytes, "
                "a write cut short by a crash) is set aside, not counted; the next verdict "
                f"moves it to {torn_path(path).name}")


def torn_path(path: Path) -> Path:
    return Path(path).with_suffix(TORN_SUFFIX)


def _open(path: Path, flags: int) -> int:
    """os.open that refuses a symbolic link in `path`'s place, with one line."""
    try:
        return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise InputError(f"refusing to follow {path}: it is a symbolic link (planted in "
                             "the run folder?); remove the link") from None
        raise InputError(f"{path}: cannot open: {exc.strerror}") from None


def read_text(path: Path, whole: Callable[[bytes], bool] = lambda raw: False,
              ) -> LogText | None:
    """The log's lines, or None when there is no log. A line that is not UTF-8 is an error
    naming file:line; an unfinished last line is returned apart, never decoded as a line,
    unless `whole(bytes)` says it is complete."""
    try:
        fd = _open(path, os.O_RDONLY)
    except InputError:
        if not os.path.lexists(path):
            return None
        raise
    with os.fdopen(fd, "rb") as handle:
        data = handle.read()
    *complete, torn = data.split(b"\n")
    if torn and whole(torn):
        complete.append(torn)
        torn = b""
    lines = []
    for number, raw in enumerate(complete, 1):
        try:
            lines.append((number, raw.decode("utf-8")))
        except UnicodeDecodeError as exc:
            raise InputError(f"{path}:{number}: not UTF-8 ({exc.reason})") from None
    return LogText(lines, torn)


def append_text(path: Path, text: str, whole: Callable[[bytes], bool] = lambda raw: False,
                ) -> bytes:
    """Append whole lines (`text` ends in "\\n") after moving an unfinished last line aside
    (one that `whole` accepts is ended with "\\n" instead); flushed to disk before returning.
    Returns the bytes set aside (b"" if none)."""
    if not text.endswith("\n"):
        raise ValueError("append whole lines")
    created = not os.path.lexists(path)
    fd = _open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # released by close
        torn = _cut_torn_tail(path, fd, whole)
        data = text.encode("utf-8")
        while data:
            written = os.write(fd, data)
            data = data[written:]
        os.fsync(fd)
    finally:
        os.close(fd)
    if created:
        _fsync_dir(Path(path).parent)  # the new file's name is on disk too
    return torn


def _cut_torn_tail(path: Path, fd: int, whole: Callable[[bytes], bool]) -> bytes:
    """Move the bytes after the log's last "\\n" to the side file, then cut them off; if they
    are a whole line, end it with "\\n" instead."""
    size = os.fstat(fd).st_size
    end = size
    while end > 0:
        start = max(0, end - _CHUNK)
        block = os.pread(fd, end - start, start)
        newline = block.rfind(b"\n")
        if newline >= 0:
            end = start + newline + 1
            break
        end = start
    if end == size:
        return b""
    torn = os.pread(fd, size - end, end)
    if whole(torn):
        os.write(fd, b"\n")
        return b""
    record = {"at": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
              "file": Path(path).name, "offset": end, "bytes": len(torn),
              "text": torn.decode("utf-8", "backslashreplace"),
              "base64": base64.b64encode(torn).decode("ascii")}
    side = _open(torn_path(path), os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(side, (json.dumps(record, ensure_ascii=True) + "\n").encode("ascii"))
        os.fsync(side)  # kept beside the log before it leaves the log
    finally:
        os.close(side)
    os.ftruncate(fd, end)
    return torn


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
