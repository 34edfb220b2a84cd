"""A live, quiet progress line for local runs: per stage, records and generator throughput;
per bootstrap loop, accepted/target, requests in flight and an ETA.

Beam's counters are only readable when a local run ends, so the stages also report here, in
the process that runs them. One line is redrawn in place on a terminal (at most every 0.5 s);
elsewhere a line is printed every 15 s. `INSTRUCTBEAM_PROGRESS=0` silences it. On Dataflow
the workers' stderr goes to worker logs and the job's counters show the same figures.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import defaultdict

_FIELDS = ("requests", "cached", "failed", "tokens", "kept", "rejected")


class _Progress:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stages: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(_FIELDS, 0))
        # bootstrap loops: name -> [accepted, target, in flight, started (monotonic)]
        self._loops: dict[str, list[float]] = {}
        self._start = time.time()  # wall clock, as the manifest's start and duration_s
        self._last = 0.0
        self._tty = sys.stderr.isatty()
        self._enabled = os.environ.get("INSTRUCTBEAM_PROGRESS", "1") != "0"

    def add(self, stage: str, **deltas: int) -> None:
        if not self._enabled:
            return
        with self._lock:
            row = self._stages[stage]
            for name, value in deltas.items():
                row[name] = row.get(name, 0) + value
        self._draw()

    def loop(self, name: str, *, accepted: int, target: int, in_flight: int,
             answered: int = 0, left: int | None = None, warning: str | None = None
             ) -> None:
        """A bootstrap loop's state (pipelines/transforms/bootstrap.py): shown as
        `name: accepted/target, N in flight, ETA`. With `left` (the loop's estimate of the
        requests still to answer, follow-ups included) the ETA is over requests, else over
        accepted instructions; either way it assumes the rate so far holds. `warning`: shown
        after it (e.g. a collapsed acceptance rate)."""
        if not self._enabled:
            return
        with self._lock:
            started = self._loops.get(name, [0, 0, 0, time.monotonic()])[3]
            work = (answered, answered + left) if left is not None else (accepted, target)
            self._loops[name] = [accepted, target, in_flight, started, work, warning]
        self._draw()

    def _draw(self) -> None:
        with self._lock:
            now = time.monotonic()
            if now - self._last < (0.5 if self._tty else 15.0):
                return
            self._last = now
            line = self._line(time.time())
        end = "\r" if self._tty else "\n"
        print(f"{line[:200]:<200}" if self._tty else line, end=end, file=sys.stderr, flush=True)

    def _line(self, now: float) -> str:
        elapsed = max(now - self._start, 1e-6)
        parts = []  # loops first: a terminal line is cut at 200 characters
        for name, (accepted, target, in_flight, started, work, warning) in self._loops.items():
            parts.append(f"{name}: {accepted:.0f}/{target:.0f} accepted, {in_flight:.0f} in "
                         f"flight{_eta(*work, time.monotonic() - started)}"
                         + (f" [{warning}]" if warning else ""))
        for stage, row in self._stages.items():
            bits = []
            if row["requests"]:
                bits.append(f"{row['requests']} req")
                if row["cached"]:
                    bits.append(f"{row['cached']} cached")
                bits.append(f"{row['tokens'] / elapsed:.0f} tok/s")
            if row["failed"]:
                bits.append(f"{row['failed']} failed")
            if row["kept"] or row["rejected"]:
                bits.append(f"{row['kept']} kept {row['rejected']} rej")
            if bits:
                parts.append(f"{stage}: {' '.join(bits)}")
        return f"[{elapsed:5.0f}s] " + " | ".join(parts)

    def start(self) -> float:
        """Start a run's clock and return it (time.time()): the progress line and the
        summary's duration are measured from this one instant, not from when the module
        was imported or the last run finished."""
        with self._lock:
            self._stages.clear()
            self._loops.clear()
            self._start = time.time()
            self._last = 0.0
            return self._start

    def note(self, message: str) -> None:
        """One line about a slow one-off step (model conversion, server start), printed at
        once: a newcomer sees what the first minute is spent on. On a terminal it replaces
        the in-place progress line, which is redrawn below it on the next update."""
        if not self._enabled:
            return
        with self._lock:
            prefix = "\r\x1b[2K" if self._tty and self._last else ""
            print(f"{prefix}instructbeam: {message}", file=sys.stderr, flush=True)

    def finish(self) -> None:
        """End the in-place line so the summary starts on a fresh one."""
        with self._lock:
            if self._tty and self._last:
                print(file=sys.stderr, flush=True)
            self._stages.clear()
            self._loops.clear()
            self._start = time.time()
            self._last = 0.0


def _eta(done: float, total: float, elapsed: float) -> str:
    """", ETA 3m20s" from the rate so far; nothing until something is done or once it is."""
    if done <= 0 or done >= total:
        return ""
    left = int(elapsed * (total - done) / done)
    return f", ETA {left // 60}m{left % 60:02d}s" if left >= 60 else f", ETA {left}s"


PROGRESS = _Progress()
