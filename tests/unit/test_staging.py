"""The swap and the lock beside an output (pipelines/outputs/staging.py, output_lock.py),
without a pipeline: the cases a run cannot easily be stopped at."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest

from pipelines.errors import InputError
from pipelines.outputs import staging
from pipelines.outputs.output_lock import OutputLock


def _previous_run(out: Path, verdicts: str) -> None:
    (out / "review").mkdir(parents=True)
    (out / "review" / "verdicts.jsonl").write_text(verdicts)
    (out / "manifest.json").write_text(json.dumps({"tool": "instructbeam", "written": {}}))


def test_verdicts_appended_during_the_swap_reach_the_new_output(tmp_path, monkeypatch):
    """The review server may append to the previous output's verdicts after review/ was
    copied and before the swap: the line is added to the new output, not lost."""
    out = tmp_path / "out"
    _previous_run(out, '{"id": "a"}\n')
    new = staging.fresh(out)
    (new / "manifest.json").write_text("{}")
    real_rename = os.rename

    def rename(src, dst):
        if Path(src) == out:  # the previous output going aside: one more verdict first
            with (out / "review" / "verdicts.jsonl").open("a") as handle:
                handle.write('{"id": "b"}\n')
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", rename)
    note = staging.promote(new, out)
    assert (out / "review" / "verdicts.jsonl").read_text() == '{"id": "a"}\n{"id": "b"}\n'
    assert note is not None and "(2 verdict lines)" in note
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_linked_review_folder_is_carried_as_a_link(tmp_path):
    out, kept = tmp_path / "out", tmp_path / "verdicts-elsewhere"
    kept.mkdir()
    (kept / "verdicts.jsonl").write_text('{"id": "a"}\n')
    out.mkdir()
    (out / "review").symlink_to(kept)
    new = staging.fresh(out)
    staging.promote(new, out)
    assert (out / "review").is_symlink() and (out / "review").resolve() == kept
    assert (kept / "verdicts.jsonl").read_text() == '{"id": "a"}\n'


def test_scrap_of_a_finished_swap_is_removed_once_its_owner_is_gone(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    scrap = tmp_path / "out.old-1-1"
    scrap.mkdir()
    (scrap / staging.OWNER_FILE).write_text(json.dumps(
        {"tool": "instructbeam", "pid": 2 ** 22 + 1, "host": socket.gethostname()}))
    staging.recover(out)  # not an output set aside: nothing to restore or report
    assert scrap.exists()
    staging.discard(staging.fresh(out))
    assert not scrap.exists()


def test_one_lock_per_output_folder(tmp_path):
    out = tmp_path / "out"
    with OutputLock(out) as lock:
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()
        with pytest.raises(InputError, match="is in use by another instructbeam run"):
            with OutputLock(out):
                pass
        with OutputLock(tmp_path / "other"):  # another folder: its own lock
            pass
    assert not lock.path.exists()
    with OutputLock(out):
        pass


def test_an_output_name_with_glob_characters(tmp_path):
    """`run[1]`'s stale staging folder is found (a glob would read `[1]` as a pattern), and
    `run1`'s is not its."""
    dead = {"tool": "instructbeam", "pid": 2 ** 22 + 1, "host": socket.gethostname()}
    for name in ("run[1].staging-1-1", "run1.staging-1-1"):
        (tmp_path / name).mkdir()
        (tmp_path / name / staging.OWNER_FILE).write_text(json.dumps(dead))
    staging.discard(staging.fresh(tmp_path / "run[1]"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run1.staging-1-1"]
