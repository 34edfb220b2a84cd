"""Ctrl-C during `instructbeam run`: one line, nothing written, exit 130.

Beam runs a local job's bundles on the main thread and turns a KeyboardInterrupt raised inside
a DoFn into a RuntimeError (after logging it with a long traceback), so catching
KeyboardInterrupt at the top of the CLI is not enough. A SIGINT handler therefore records that
the user asked to stop, mutes Beam's loggers and then raises; whatever exception comes out of
the run is recognised by that record. `run()` already removes its staging directory and stops
the servers it started on any exception, so the caller only has to say what is left: the
answers the response cache gained, which the same command reuses.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for a Ctrl-C'd program


@dataclass
class Interrupt:
    """What the handler saw; `cache_dir` is filled in once the config is known."""

    since: float  # wall-clock start of this run: cache entries newer than this are its own
    requested: bool = False
    cache_dir: str | None = None
    caching: bool | None = None  # None: the config was not loaded yet

    def message(self) -> str:
        if self.caching is None:
            return "interrupted: nothing written"
        if not self.caching:
            return ("interrupted: nothing written; the response cache is off (--no-cache or "
                    "cache.enabled: false), so the same command starts over")
        count = cached_since(self.cache_dir, self.since) if self.cache_dir else None
        cached = "answers so far are cached" if count is None else (
            f"{count} answer{'' if count == 1 else 's'} cached")
        return f"interrupted: nothing written; {cached}; the same command resumes"


def cached_since(cache_dir: str, since: float) -> int | None:
    """Response-cache entries written at or after `since` (None for a remote cache).

    Counting files rather than the run's counters: Beam's counters are only readable when a
    job finishes, and an interrupted one never does. Entries are renamed into place whole
    (pipelines/generators/cache.py), so every file counted is a usable answer.
    """
    if "://" in cache_dir:
        return None
    count = 0
    try:
        shards = list(os.scandir(cache_dir))
    except OSError:
        return 0
    for shard in shards:
        if not shard.is_dir():
            continue
        with os.scandir(shard.path) as entries:
            for entry in entries:
                if entry.name.endswith(".json") and entry.stat().st_mtime >= since:
                    count += 1
    return count


class _MuteAfterInterrupt(logging.Filter):
    """Drops Beam's log records once Ctrl-C was pressed (its DoFn error logs a traceback)."""

    def __init__(self, state: Interrupt) -> None:
        super().__init__()
        self._state = state

    def filter(self, record: logging.LogRecord) -> bool:
        return not (self._state.requested and record.name.startswith("apache_beam"))


@contextmanager
def catch_interrupt(since: float) -> Iterator[Interrupt]:
    """Within the block, the first Ctrl-C raises KeyboardInterrupt and sets `requested`;
    further ones are ignored so that removing staging and stopping servers can finish."""
    state = Interrupt(since=since)
    if threading.current_thread() is not threading.main_thread():
        yield state  # signal handlers can only be installed from the main thread
        return
    mute = _MuteAfterInterrupt(state)
    handlers = list(logging.getLogger().handlers)
    for handler in handlers:
        handler.addFilter(mute)

    def on_sigint(signum: int, frame: object) -> None:
        if state.requested:
            return
        state.requested = True
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield state
    finally:
        # After a Ctrl-C, one more ends the process at once (while it waits for requests in
        # flight): the default action kills it silently with the shell's usual status 130.
        signal.signal(signal.SIGINT, signal.SIG_DFL if state.requested else previous)
        if not state.requested:  # after a Ctrl-C the filter stays: Beam may log it again
            for handler in handlers:
                handler.removeFilter(mute)
