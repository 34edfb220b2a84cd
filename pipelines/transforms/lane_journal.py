"""A bootstrap lane's journal: what its loop decided, prompt by prompt, kept beside the cache.

Why a journal and not only the response cache: the cache holds answers, and a failure a loop
decided must be replayed as a failure, or the rerun's pools (and so every later prompt) differ
from the first run's. The journal also says how far the lane got, so a rerun of a finished
run sends nothing past its last decision (pipelines/transforms/bootstrap_loop.py: `replay`).

Layout, on Beam FileSystems (a local folder or gs://, like the cache):
`<cache>/lanes/<lane id>/<first index, 9 digits>.jsonl`, one JSON line per decided prompt.
The loop's decisions are buffered and written as a new segment every `flush_s` seconds, at
once after a failure (the one decision the cache cannot give back), and when the loop ends; a
segment is written under a temporary name and renamed, so a killed run leaves whole segments.
A decision that differs from the recorded one (a retried failure, a changed config) drops the
recorded tail: the segment holding it is rewritten shorter first, then later ones are deleted,
so a crash in between leaves a gap, and reading stops at the first gap. Segments are merged
like a binary counter, so a run of hours keeps a handful of them. Two runs writing the same
lane at once (same config, same cache, at the same time) are not coordinated: both write the
same decisions, as their answers agree (the cache's first answer wins).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from apache_beam.io.filesystems import FileSystems

from pipelines.generators.generation import RecordedFailure
from pipelines.transforms.bootstrap_loop import DecidedPrompt, Refresh
from schemas.jsonl import iter_json_lines, split_lines

log = logging.getLogger(__name__)

JOURNAL_DIR = "lanes"
_DIGITS = 9


def lane_id(*, recipe: str, stage: str, lane: int, lanes: int, threshold: float,
            refresh: Refresh, exact_scores: bool, first_key: str) -> str:
    """Which journal a lane reads: the recipe's lane and the settings that decide what the
    loop keeps, plus the cache key of its first prompt (model, revision, template, seed
    tasks, sampling and seed all change it). Targets and budgets are not in it: raising a
    target resumes the same journal. What is not in it (the heuristics) is caught by the
    key check of every replayed prompt."""
    material = {"recipe": recipe, "stage": stage, "lane": lane, "lanes": lanes,
                "threshold": threshold, "refresh": [refresh.mode, refresh.size],
                "exact": exact_scores, "first": first_key}
    blob = json.dumps(material, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:32]


def _encode(index: int, decided: DecidedPrompt) -> dict:
    row: dict = {"i": index, "key": decided.key}
    if decided.failure is None:
        row["accepted"] = decided.accepted
    else:
        f = decided.failure
        row["failed"] = {"error_class": f.error_class, "error_message": f.error_message,
                         "attempts": f.attempts}
    return row


def _decode(row: dict) -> DecidedPrompt:
    failed = row.get("failed")
    failure = None if failed is None else RecordedFailure(
        str(failed["error_class"]), str(failed["error_message"]), int(failed["attempts"]))
    return DecidedPrompt(str(row["key"]), int(row.get("accepted", 0)), failure)


@dataclass(frozen=True)
class _Segment:
    start: int
    end: int  # exclusive
    path: str


class LaneJournal:
    """One lane's recorded decisions: `entries` as read, then `record` as the loop decides."""

    def __init__(self, cache_dir: str, lane: str, *, flush_s: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._dir = FileSystems.join(cache_dir, JOURNAL_DIR, lane)
        self._flush_s = flush_s
        self._clock = clock
        self._segments: list[_Segment] = []
        self.entries: list[DecidedPrompt] = self._read()
        self._durable = len(self.entries)  # entries[:durable] are on disk as they are
        self._last_flush = clock()

    # -- reading ---------------------------------------------------------------------------

    def _read(self) -> list[DecidedPrompt]:
        entries: list[DecidedPrompt] = []
        for path in self._segment_paths():
            try:
                with FileSystems.open(path, compression_type="uncompressed") as handle:
                    rows = [row for _, row in iter_json_lines(  # "\n" only: texts hold U+2028
                        split_lines(handle.read()), str(path))]
                start = int(rows[0]["i"]) if rows else -1
                if start < 0 or start > len(entries) or any(
                        int(row["i"]) != start + n for n, row in enumerate(rows)):
                    break  # a gap (or a damaged segment): nothing after it is trusted
                decided = [_decode(row) for row in rows]
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.warning("lane journal %s: %s is unreadable (%s); the lane resumes from "
                            "the decisions before it", self._dir, path, exc)
                break
            entries[start:start + len(decided)] = decided
            self._segments.append(_Segment(start, start + len(decided), path))
        return entries

    def _segment_paths(self) -> list[str]:
        try:
            found = FileSystems.match([FileSystems.join(self._dir, "*.jsonl")])[0]
        except Exception:  # noqa: BLE001 - no folder yet (local), or nothing under the prefix
            return []
        paths = [m.path for m in found.metadata_list]
        return sorted(paths, key=lambda p: os.path.basename(p))

    # -- writing ---------------------------------------------------------------------------

    def record(self, index: int, decided: DecidedPrompt) -> None:
        """The loop decided prompt `index` (prompts are decided in order, from 0)."""
        if index > len(self.entries):
            raise ValueError(f"prompt {index} decided before prompt {len(self.entries)}")
        if index < len(self.entries) and self.entries[index] == decided:
            return  # replayed as recorded
        del self.entries[index:]
        self.entries.append(decided)
        self._durable = min(self._durable, index)
        if decided.failure is not None or self._clock() - self._last_flush >= self._flush_s:
            self.flush()

    def flush(self) -> None:
        """Make every recorded decision durable (no-op when nothing changed)."""
        self._last_flush = self._clock()
        start = self._durable
        if start >= len(self.entries):
            return
        kept = []
        for segment in self._segments:  # shorten the one holding `start`, then drop later ones
            if segment.start < start < segment.end:
                self._write(segment.path, segment.start, self.entries[segment.start:start])
                kept.append(_Segment(segment.start, start, segment.path))
            elif segment.end <= start:
                kept.append(segment)
        for segment in self._segments:
            if segment.start >= start:
                FileSystems.delete([segment.path])
        path = FileSystems.join(self._dir, f"{start:0{_DIGITS}d}.jsonl")
        self._write(path, start, self.entries[start:])
        self._segments = [*kept, _Segment(start, len(self.entries), path)]
        self._durable = len(self.entries)
        self._merge()

    def _merge(self) -> None:
        """Merge the newest segment into the one before it while that one is no longer:
        segment sizes then fall geometrically, so a long run has O(log n) segments and each
        decision is rewritten O(log n) times (a binary counter). The longer segment is
        written before the shorter one is deleted: a crash leaves two that agree."""
        while len(self._segments) >= 2:
            before, last = self._segments[-2], self._segments[-1]
            if before.end - before.start > last.end - last.start:
                return
            self._write(before.path, before.start, self.entries[before.start:last.end])
            FileSystems.delete([last.path])
            self._segments[-2:] = [_Segment(before.start, last.end, before.path)]

    def _write(self, path: str, start: int, entries: Sequence[DecidedPrompt]) -> None:
        if not self._dir.startswith("gs://"):
            os.makedirs(self._dir, exist_ok=True)
        body = "".join(json.dumps(_encode(start + n, d), ensure_ascii=False) + "\n"
                       for n, d in enumerate(entries)).encode("utf-8")
        tmp = f"{path}.tmp-{uuid.uuid4().hex}"
        with FileSystems.create(tmp, compression_type="uncompressed") as handle:
            handle.write(body)
        FileSystems.rename([tmp], [path])  # replaces: os.rename locally, copy on gs://


@dataclass(frozen=True)
class RetryCost:
    """What asking a lane's recorded failures again may cost, said before the run."""

    failed: int  # recorded failed prompts (asked again)
    invalidated: int  # decided prompts after the first failure whose pool may change
    calls: int  # up to this many requests: the failed, the invalidated, their follow-ups


def retry_cost(entries: Sequence[DecidedPrompt], refresh: Refresh, followups: int
               ) -> RetryCost:
    """If the first failed prompt now gets an answer that adds to the pool, every later
    prompt that sees its decision is built from another pool: its answer (and the follow-ups
    of what it accepted) is asked again. An upper bound: a retried prompt that adds nothing
    changes nothing."""
    failed = [i for i, e in enumerate(entries) if e.failure is not None]
    if not failed:
        return RetryCost(0, 0, 0)
    first = failed[0]
    later = [e for i, e in enumerate(entries)
             if i > first and refresh.visible(i) > first and e.failure is None]
    accepted = sum(e.accepted for e in later)
    return RetryCost(len(failed), len(later), len(failed) + len(later) + followups * accepted)
