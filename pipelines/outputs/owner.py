"""Who made a lock file or a folder beside an output, and whether that process is gone.

A run leaves `{tool, pid, host, started}` in what it creates beside an output (the lock
file, a staging folder's marker), so that a later run can tell its own leftovers from a
person's files (those never carry the record) and a crashed run's leftovers from a live
run's (the pid on this host still runs). A record from another host is never judged gone:
its pid means nothing here.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

TOOL: Final = "instructbeam"  # the same marker as a complete run's manifest


def this_process() -> dict[str, Any]:
    """The record of the running process."""
    return {"tool": TOOL, "pid": os.getpid(), "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def parse(text: str) -> dict[str, Any] | None:
    """A record written by `this_process`, or None for anything else."""
    try:
        record = json.loads(text)
    except ValueError:
        return None
    if not (isinstance(record, dict) and record.get("tool") == TOOL
            and isinstance(record.get("pid"), int) and isinstance(record.get("host"), str)):
        return None
    return record


def read(path: Path) -> dict[str, Any] | None:
    """The record in a file, or None when it is missing, unreadable or not a record."""
    try:
        return parse(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        return None


def text() -> str:
    """The record of the running process as one JSON line."""
    return json.dumps(this_process()) + "\n"


def write(path: Path) -> None:
    path.write_text(text(), encoding="utf-8")


def gone(record: Mapping[str, Any]) -> bool:
    """True when the process of `record` ran on this host and no longer runs."""
    return record.get("host") == socket.gethostname() and not alive(int(record["pid"]))


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def describe(record: Mapping[str, Any] | None) -> str:
    """"pid 12 on host h since 2024-...", for a line that names a lock's owner."""
    if record is None:
        return "owner not yet recorded"
    since = f" since {record['started']}" if record.get("started") else ""
    return f"pid {record['pid']} on {record['host']}{since}"
