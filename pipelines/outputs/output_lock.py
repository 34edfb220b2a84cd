"""One run at a time per output folder: the lock file `<out>.lock` beside it.

Two runs into one `output_dir` would both do all the work and one result would silently win;
with the lock the second stops at once, with one line naming the first (pid, host, start).

The lock is an advisory `flock` on that file, held for the whole run. The kernel releases it
when the process ends, however it ends, so a lock left by a killed run is stale by
construction and the next run takes it over. The file names its owner ({tool, pid, host,
started}, pipelines/outputs/owner.py) for the refusal line; where `flock` is not available
(some network filesystems) that record decides instead: a lock whose process is gone from
this host is taken over. The file is removed when the run ends. A `<out>.lock` that is not
such a record (a person's file) is never overwritten: the run stops and says so.

Local only: object stores have no lock a run could hold, so a gs:// output runs unlocked, as
before.
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path
from types import TracebackType

from pipelines.errors import InputError
from pipelines.outputs import owner

SUFFIX = ".lock"


def lock_path(out: Path) -> Path:
    return out.parent / f"{out.name}{SUFFIX}"


class OutputLock:
    """`with OutputLock(out):` holds the lock of output folder `out` (an absolute path)."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.path = lock_path(out)
        self._fd: int | None = None

    def __enter__(self) -> OutputLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while self._fd is None:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                if self._take(fd):
                    self._fd = fd
            finally:
                if self._fd is None:
                    os.close(fd)
        return self

    def _take(self, fd: int) -> bool:
        """Lock `fd` and write our record; False when the file was replaced meanwhile (the
        holder removed it on finishing: open the new one)."""
        locked = _flock(fd)
        text = os.pread(fd, 4096, 0).decode("utf-8", "replace")
        holder = owner.parse(text)
        if text.strip() and holder is None:
            raise InputError(f"{self.path} exists and is not an {owner.TOOL} lock; it is kept: "
                             f"move it, or choose another output dir than {self.out}")
        if locked is False or (locked is None and holder and not owner.gone(holder)):
            raise InputError(f"output dir {self.out} is in use by another {owner.TOOL} run "
                             f"({owner.describe(holder)}; lock {self.path}); wait for it to "
                             "finish or choose another output dir")
        if not _same_file(fd, self.path):
            return False
        os.ftruncate(fd, 0)
        os.pwrite(fd, owner.text().encode("utf-8"), 0)
        return True

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if self._fd is None:
            return
        try:  # remove before unlocking, so that nobody takes a lock on a file on its way out
            self.path.unlink(missing_ok=True)
        finally:
            os.close(self._fd)
            self._fd = None


def _flock(fd: int) -> bool | None:
    """True: locked; False: another process holds it; None: this filesystem has no flock."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError as exc:
        if exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):
            return None
        raise
    return True


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False
