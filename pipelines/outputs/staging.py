"""The folder a local run writes into, and the swap that puts it in place of the output.

Beside the output `<out>` a run makes two kinds of folders, and touches no others:

- `<out>.staging-<pid>-<ns>`: the run's output while it is written. It holds OWNER_FILE
  ({tool, pid, host}, pipelines/outputs/owner.py) from the moment it is made. A later run
  removes a staging folder only when it has this name, this marker, and its owner is gone
  from this host; a person's `out.staging-notes`, or any folder without the marker, is
  never touched.
- `<out>.old-<pid>-<ns>`: the previous output during the swap. Once the new output is in
  place it gets the marker too (it is scrap from then on) and is deleted. Should the process
  die first, the next run finds it (`recover`): without the marker it is the previous
  output, restored when `<out>` is missing and reported otherwise; with the marker, scrap,
  removed like a stale staging folder.

The swap (`promote`) copies `review/` of the previous output (a person's verdicts, never the
run's to delete) into the staged one, renames the previous output aside, and renames the
staged one in; if that fails, the previous output is renamed back before the error goes on.
Both renames stay in one folder, so each is atomic: a reader sees the previous output or the
new one, each whole (for an instant, none). Verdicts appended to the previous output while
the swap ran are added to the new one before the old is deleted.

Callers hold the output's lock (pipelines/outputs/output_lock.py), so no other run of this
host works on `<out>` meanwhile. Local only: a gs:// run stages under a prefix and swaps
object by object (pipelines/run.py), with no markers or recovery: its staging and aside
prefixes are cleaned up by the run that made them.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import time
from pathlib import Path
from typing import Final

from pipelines.outputs import owner
from pipelines.outputs.output_dir import is_complete_run, local_files, read_local_manifest
from pipelines.outputs.review import REVIEW_DIR, VERDICTS_FILE

log = logging.getLogger(__name__)

OWNER_FILE: Final = ".instructbeam-owner.json"


def _ours(out: Path, kind: str) -> list[tuple[int, Path]]:
    """(pid, folder) of the folders beside `out` with this tool's name for `kind` ("staging"
    or "old"), oldest first; links and files are never ours."""
    pattern = re.compile(re.escape(out.name) + rf"\.{kind}-(\d+)-(\d+)")
    found = [(int(m.group(2)), int(m.group(1)), p)
             for p in out.parent.iterdir()  # not glob: a name may hold [ or *
             if (m := pattern.fullmatch(p.name)) and p.is_dir() and not p.is_symlink()]
    return [(pid, p) for _, pid, p in sorted(found)]


def _stale(folder: Path) -> bool:
    record = owner.read(folder / OWNER_FILE)
    return record is not None and owner.gone(record)


def fresh(out: Path) -> Path:
    """A new staging folder beside `out`, marked as this process's; stale ones are removed
    first."""
    out.parent.mkdir(parents=True, exist_ok=True)
    for _, folder in [*_ours(out, "staging"), *_ours(out, "old")]:
        if _stale(folder):
            shutil.rmtree(folder, ignore_errors=True)
    staging = out.parent / f"{out.name}.staging-{os.getpid()}-{time.time_ns()}"
    staging.mkdir()
    owner.write(staging / OWNER_FILE)
    return staging


def staged_files(staging: Path) -> list[str]:
    """What the run wrote into `staging` (its marker is not part of the output)."""
    return [name for name in local_files(staging) if name != OWNER_FILE]


def discard(staging: Path) -> None:
    shutil.rmtree(staging, ignore_errors=True)


def recover(out: Path) -> None:
    """Deal with a previous output that a crashed swap left at `<out>.old-*`: put it back
    when `<out>` is missing (the newest complete one), else say where it is. Nothing is
    deleted here."""
    for pid, aside in reversed(_ours(out, "old")):
        if (aside / OWNER_FILE).exists():
            continue  # scrap of a finished swap: `fresh` removes it once its owner is gone
        if pid != os.getpid() and owner.alive(pid):
            continue  # a run of this host may be swapping right now
        if is_complete_run(read_local_manifest(aside)) and not out.exists() \
                and not out.is_symlink():
            os.rename(aside, out)
            log.warning("restored %s from %s, where an interrupted run had set it aside",
                        out, aside)
        else:
            log.warning("%s holds an earlier output of %s that an interrupted run set aside; "
                        "it is kept: delete it once you no longer need it", aside, out.name)


def promote(staging: Path, out: Path) -> str | None:
    """Swap the finished `staging` in place of `out` (see the module docstring); returns a
    line saying that review/ was carried over, if it was."""
    review = out / REVIEW_DIR
    carried = _copy_review(review, staging / REVIEW_DIR)
    (staging / OWNER_FILE).unlink()
    if not out.exists() and not out.is_symlink():
        os.rename(staging, out)
        return None
    aside = out.parent / f"{out.name}.old-{os.getpid()}-{time.time_ns()}"
    os.rename(out, aside)
    try:
        os.rename(staging, out)
    except BaseException:
        try:
            os.rename(aside, out)
        except OSError:
            log.error("the previous output could not be moved back to %s; it is kept at %s",
                      out, aside, exc_info=True)
        raise
    try:  # the new output is in place: nothing below may fail the run
        if carried is not None:
            _catch_up(aside / REVIEW_DIR / VERDICTS_FILE, out / REVIEW_DIR / VERDICTS_FILE,
                      carried)
        owner.write(aside / OWNER_FILE)  # scrap from here on
        shutil.rmtree(aside)
    except OSError:
        log.warning("the previous output at %s could not be deleted", aside, exc_info=True)
    if carried is None:
        return None
    lines = _lines(out / REVIEW_DIR / VERDICTS_FILE)
    return (f"kept review/ of the previous output ({lines} verdict line{'s' * (lines != 1)}) "
            f"in {out / REVIEW_DIR}; `instructbeam review {out}` rewrites its page for the new "
            "audit sample")


def _copy_review(source: Path, target: Path) -> int | None:
    """Copy review/ (links as links); the size of verdicts.jsonl copied, None if there was
    no review/."""
    if source.is_symlink():
        os.symlink(os.readlink(source), target)
        return 0
    if not source.is_dir():
        return None
    shutil.copytree(source, target, symlinks=True)
    verdicts = target / VERDICTS_FILE
    return verdicts.stat().st_size if verdicts.is_file() and not verdicts.is_symlink() else 0


def _catch_up(old: Path, new: Path, copied: int) -> None:
    """Append what the review server added to the previous output's verdicts after the copy."""
    if any(p.is_symlink() for p in (old, old.parent, new, new.parent)) or not old.is_file():
        return  # a linked review/ is one folder for both: nothing was copied
    with old.open("rb") as handle:
        handle.seek(copied)
        tail = handle.read()
    if tail:
        with new.open("ab") as handle:
            handle.write(tail)


def _lines(path: Path) -> int:
    try:
        return sum(1 for line in path.read_bytes().split(b"\n") if line.strip())
    except OSError:
        return 0
