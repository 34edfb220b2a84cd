"""What a run may replace: only a complete earlier run of this tool, never the user's files.

Filter-recipe runs (no generator) through the command line, locally and on the in-memory
remote filesystem, including a failure injected in the middle of the remote swap.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import memory_filesystem as memfs
import pytest
from helpers import read_rows

from pipelines.cli import main
from pipelines.outputs.review import make_verdict, read_sample

ROWS = [{"instruction": "Name a red fruit.", "input": "", "output": "Apple"},
        {"instruction": "Say nothing.", "input": "", "output": ""}]


def _config(tmp_path: Path, output_dir: str | Path | None = None, input_path: str | None = None
            ) -> str:
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    path = tmp_path / "config.yaml"
    path.write_text("\n".join([
        "recipe: filter",
        f"output_dir: {output_dir or tmp_path / 'out'}",
        "audit_per_source: 1",
        "input:",
        f"  path: {input_path or data}",
    ]) + "\n")
    return str(path)


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _last_error(capsys) -> str:
    return capsys.readouterr().err.strip().splitlines()[-1]


# -- local --------------------------------------------------------------------------------------

def test_a_previous_complete_run_is_replaced_silently(tmp_path, capsys):
    config = _config(tmp_path)
    assert main(["run", config]) == 0
    out = tmp_path / "out"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["tool"] == "instructbeam"
    assert "data/part-00000-of-00001.parquet" in manifest["written"]
    assert {"README.md", "report.html", "audit/external_data.jsonl"} <= set(manifest["written"])
    assert sorted(manifest["written"]) == sorted(set(_tree(out)) - {"manifest.json"})
    (out / "report.html").unlink()  # `instructbeam report OUT` may write it again
    assert main(["report", str(out)]) == 0
    assert main(["run", config]) == 0
    assert [r["instruction"] for r in read_rows(out, "data")] == ["Name a red fruit."]
    assert not [p.name for p in tmp_path.iterdir() if ".old-" in p.name or ".staging-" in p.name]


@pytest.mark.parametrize("extra", [["notes.txt"], ["notes.txt", "a/b.txt", "c.txt", "d.txt"]])
def test_a_file_the_run_did_not_write_is_refused_and_kept(tmp_path, capsys, extra):
    config = _config(tmp_path)
    assert main(["run", config]) == 0
    out = tmp_path / "out"
    for name in extra:
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text("mine")
    before = _tree(out)
    assert main(["run", config]) == 2
    err = _last_error(capsys)
    assert err.startswith(f"error: output dir {out} holds files this tool did not write: ")
    assert sorted(extra)[0] in err and err.endswith("pass --overwrite to replace it")
    assert ("(and 1 more)" in err) == (len(extra) == 4)
    assert _tree(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml", "data.jsonl", "out"]


def test_a_folder_without_manifest_is_refused_before_anything_runs(tmp_path, capsys):
    out = tmp_path / "out"
    (out / "data").mkdir(parents=True)
    (out / "data" / "part-00000-of-00001.parquet").write_bytes(b"not ours")
    (out / "notes.txt").write_text("mine")
    assert main(["run", _config(tmp_path)]) == 2
    err = _last_error(capsys)
    assert f"output dir {out} is not a finished instructbeam run (no manifest.json)" in err
    assert "data/part-00000-of-00001.parquet, notes.txt" in err
    assert _tree(out) == {"data/part-00000-of-00001.parquet": b"not ours",
                          "notes.txt": b"mine"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml", "data.jsonl", "out"]


def test_overwrite_replaces_a_foreign_folder(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main(["run", _config(tmp_path), "--overwrite"]) == 0
    assert not (out / "notes.txt").exists() and (out / "manifest.json").exists()


def test_an_empty_folder_is_used(tmp_path, capsys):
    (tmp_path / "out").mkdir()
    assert main(["run", _config(tmp_path)]) == 0
    assert (tmp_path / "out" / "manifest.json").exists()


@pytest.mark.parametrize("where", ["cwd", "cwd_parent", "home", "root", "config_dir",
                                   "input_dir"])
def test_protected_folders_are_refused_even_with_overwrite(tmp_path, monkeypatch, capsys,
                                                           where):
    work = tmp_path / "work"
    (work / "cwd").mkdir(parents=True)
    (work / "cwd" / "mine.txt").write_text("mine")
    monkeypatch.chdir(work / "cwd")
    home = tmp_path / "users" / "home"
    home.mkdir(parents=True)
    (home / ".bashrc").write_text("mine")
    monkeypatch.setenv("HOME", str(home))
    project = tmp_path / "project"
    inputs = project / "inputs"
    inputs.mkdir(parents=True)
    (inputs / "data.jsonl").write_text(json.dumps(ROWS[0]) + "\n")
    config = _config(project, input_path=str(inputs / "*.jsonl"))
    target, expected = {
        "cwd": (".", "is the current directory"),
        "cwd_parent": (str(work), "contains the current directory"),
        "home": (str(home), "is the home directory"),
        "root": ("/", "is a filesystem root"),
        "config_dir": (str(project), "contains the config file"),
        "input_dir": (str(inputs), "contains input.path"),
    }[where]
    before = _tree(tmp_path)
    assert main(["run", config, "--set", f"output_dir={target}", "--overwrite"]) == 2
    err = _last_error(capsys)
    assert expected in err and "never replaces it (even with --overwrite)" in err
    assert _tree(tmp_path) == before


def test_an_output_inside_the_input_folder_of_a_previous_run_is_refused(tmp_path, capsys):
    """The README's filter example reads a run's data/: writing over that run is refused."""
    config = _config(tmp_path)
    assert main(["run", config]) == 0
    out = tmp_path / "out"
    before = _tree(out)
    assert main(["run", config, "--set", f"input.path={out}/data/*.parquet",
                 "--set", "input.input_field=input", "--set", "input.output_field=output",
                 "--overwrite"]) == 2
    assert "contains input.path" in _last_error(capsys)
    assert _tree(out) == before


def test_an_output_holding_the_response_cache_is_refused(tmp_path, capsys):
    cache = tmp_path / "out" / "cache"
    cache.mkdir(parents=True)
    assert main(["run", _config(tmp_path), "--set", f"cache.dir={cache}", "--overwrite"]) == 2
    assert f"contains cache.dir ({cache})" in _last_error(capsys)
    assert cache.is_dir()


def test_a_rerun_keeps_the_users_export(tmp_path, capsys):
    config = _config(tmp_path)
    out = tmp_path / "out"
    assert main(["run", config]) == 0
    assert main(["export", str(out), "--format", "alpaca"]) == 0
    exported = tmp_path / "out.export" / "alpaca.json"
    assert str(exported) in capsys.readouterr().out
    text = exported.read_text()
    assert main(["run", config]) == 0
    assert exported.read_text() == text and json.loads(text)[0]["output"] == "Apple"


# -- what is not ours is never touched (issue 22, section 3) -------------------------------------

def _dead_pid() -> int:
    """The pid of a process that has ended (not reused this soon)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _owner(pid: int, host: str | None = None) -> str:
    return json.dumps({"tool": "instructbeam", "pid": pid, "host": host or socket.gethostname(),
                       "started": "2024-01-01T00:00:00Z"})


def _beside(tmp_path: Path) -> list[str]:
    return sorted(p.name for p in tmp_path.iterdir())


def test_stale_clean_up_removes_only_marked_staging_folders_of_gone_runs(tmp_path, capsys):
    """A person's `out.staging-notes` (and any folder without the marker, or whose owner may
    still run) survives; only a marked staging folder of a process gone from this host goes."""
    dead = _dead_pid()
    folders = {"out.staging-notes": None, f"out.staging-{dead}-1": None,
               f"out.staging-{dead}-2": _owner(dead),
               f"out.staging-{os.getppid()}-3": _owner(os.getppid()),
               f"out.staging-{dead}-4": _owner(dead, host="another-host")}
    for name, marker in folders.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "mine.txt").write_text("mine")
        if marker:
            (tmp_path / name / ".instructbeam-owner.json").write_text(marker)
    assert main(["run", _config(tmp_path)]) == 0
    kept = set(folders) - {f"out.staging-{dead}-2"}
    assert _beside(tmp_path) == sorted({"config.yaml", "data.jsonl", "out"} | kept)
    assert all((tmp_path / name / "mine.txt").read_text() == "mine" for name in kept)
    assert not (tmp_path / "out" / ".instructbeam-owner.json").exists()


@pytest.mark.parametrize("edit", ["appended", "same_size"])
def test_a_file_changed_since_the_run_wrote_it_is_refused_and_kept(tmp_path, capsys, edit):
    config = _config(tmp_path)
    assert main(["run", config]) == 0
    out = tmp_path / "out"
    card = out / "README.md"
    record = json.loads((out / "manifest.json").read_text())["written"]["README.md"]
    assert record == {"bytes": card.stat().st_size,
                      "sha256": hashlib.sha256(card.read_bytes()).hexdigest()}
    text = card.read_text()
    card.write_text(text + "my notes\n" if edit == "appended" else "X" + text[1:])
    before = _tree(out)
    assert main(["run", config]) == 2
    assert _last_error(capsys) == (f"error: output dir {out} holds files changed since this "
                                   "tool wrote them: README.md; pass --overwrite to replace it")
    assert _tree(out) == before
    assert main(["run", config, "--overwrite"]) == 0
    assert card.read_text() == text


def test_a_manifest_from_before_the_hashes_is_still_read(tmp_path, capsys):
    """An older manifest lists names only: its run is still replaced, unless a file is newer
    than the manifest (changed after that run)."""
    config = _config(tmp_path)
    out = tmp_path / "out"

    def names_only() -> None:
        manifest = json.loads((out / "manifest.json").read_text())
        manifest["written"] = sorted(manifest["written"])
        (out / "manifest.json").write_text(json.dumps(manifest))

    assert main(["run", config]) == 0
    names_only()
    assert main(["run", config]) == 0
    names_only()
    sealed = (out / "manifest.json").stat().st_mtime
    (out / "README.md").write_text("my card")
    os.utime(out / "README.md", (sealed + 5, sealed + 5))
    assert main(["run", config]) == 2
    assert "holds files changed since this tool wrote them: README.md" in _last_error(capsys)
    assert (out / "README.md").read_text() == "my card"


def test_a_failing_swap_puts_the_previous_output_back(tmp_path, capsys, monkeypatch):
    config = _config(tmp_path)
    assert main(["run", config]) == 0
    out = tmp_path / "out"
    before = _tree(out)
    real_rename = os.rename

    def failing_rename(src, dst, *args, **kwargs):
        if ".staging-" in str(src) and Path(dst) == out:
            raise OSError("injected failure")
        return real_rename(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "rename", failing_rename)
    with pytest.raises(OSError, match="injected failure"):
        main(["run", config, "--set", "audit_per_source=2"])
    assert _tree(out) == before
    assert _beside(tmp_path) == ["config.yaml", "data.jsonl", "out"]


def test_an_output_a_crash_left_aside_is_restored(tmp_path, capsys, caplog, monkeypatch):
    """A crash between the swap's two renames leaves `out` missing and `out.old-*`: the next
    run puts it back first (here that run then fails, and the previous output is whole)."""
    config = _config(tmp_path)
    assert main(["run", config]) == 0
    out = tmp_path / "out"
    before = _tree(out)
    aside = tmp_path / f"out.old-{_dead_pid()}-1"
    os.rename(out, aside)
    (tmp_path / "out.old-backup").mkdir()  # a person's
    from pipelines import run as run_module

    def broken_pipeline(*args, **kwargs):
        raise RuntimeError("injected")

    monkeypatch.setattr(run_module, "_run_pipeline", broken_pipeline)
    with pytest.raises(RuntimeError, match="injected"):
        main(["run", config])
    assert _tree(out) == before
    assert f"restored {out} from {aside}" in caplog.text
    assert _beside(tmp_path) == ["config.yaml", "data.jsonl", "out", "out.old-backup"]


def test_an_output_left_aside_beside_a_newer_one_is_reported_and_kept(tmp_path, capsys,
                                                                       caplog):
    config = _config(tmp_path)
    assert main(["run", config]) == 0
    aside = tmp_path / f"out.old-{_dead_pid()}-1"
    shutil.copytree(tmp_path / "out", aside)
    assert main(["run", config]) == 0
    assert f"{aside} holds an earlier output of out that an interrupted run set aside; it is " \
           "kept" in caplog.text
    assert (aside / "manifest.json").exists()


def test_a_second_run_into_the_same_folder_stops_at_once(tmp_path, capsys, monkeypatch):
    config = _config(tmp_path)
    from pipelines import run as run_module

    real_pipeline = run_module._run_pipeline
    entered, release = threading.Event(), threading.Event()

    def held_pipeline(*args, **kwargs):
        if threading.current_thread() is not threading.main_thread():
            entered.set()
            release.wait(120)
        return real_pipeline(*args, **kwargs)

    monkeypatch.setattr(run_module, "_run_pipeline", held_pipeline)
    first: list[int] = []
    thread = threading.Thread(target=lambda: first.append(main(["run", config])))
    thread.start()
    try:
        assert entered.wait(120)
        assert main(["run", config]) == 2
        err = _last_error(capsys)
        assert err.startswith(f"error: output dir {tmp_path / 'out'} is in use by another "
                              f"instructbeam run (pid {os.getpid()} on {socket.gethostname()}")
        assert not (tmp_path / "out").exists()
    finally:
        release.set()
        thread.join(120)
    assert first == [0]
    assert _beside(tmp_path) == ["config.yaml", "data.jsonl", "out"]


def test_a_lock_left_by_a_killed_run_is_taken_over(tmp_path, capsys):
    (tmp_path / "out.lock").write_text(_owner(_dead_pid()))
    assert main(["run", _config(tmp_path)]) == 0
    assert _beside(tmp_path) == ["config.yaml", "data.jsonl", "out"]


def test_a_lock_held_by_another_process_stops_the_run(tmp_path, capsys):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, os, sys, time\n"
         "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)\n"
         "fcntl.flock(fd, fcntl.LOCK_EX)\n"
         "os.write(fd, sys.argv[2].encode())\nprint('held', flush=True)\ntime.sleep(60)",
         str(tmp_path / "out.lock"), _owner(12345, "build-7")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert main(["run", _config(tmp_path)]) == 2
        assert "is in use by another instructbeam run (pid 12345 on build-7 since " \
               "2024-01-01T00:00:00Z" in _last_error(capsys)
    finally:
        holder.kill()
        holder.wait()
    assert not (tmp_path / "out").exists()
    assert main(["run", _config(tmp_path)]) == 0  # its owner is gone: the lock is stale


def test_a_lock_file_that_is_not_ours_is_kept(tmp_path, capsys):
    (tmp_path / "out.lock").write_text("my notes")
    assert main(["run", _config(tmp_path)]) == 2
    assert "out.lock exists and is not an instructbeam lock" in _last_error(capsys)
    assert (tmp_path / "out.lock").read_text() == "my notes"


@pytest.mark.parametrize("link", ["review", "review/verdicts.jsonl", "report.html.tmp",
                                  "export"])
def test_no_write_follows_a_link_out_of_the_run_folder(tmp_path, capsys, link):
    """The review page, verdicts and report.html stay in the run folder; the default export
    in the folder that holds the run."""
    out = tmp_path / "runs" / "out"
    config = _config(tmp_path, out)
    assert main(["run", config]) == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    verdict = tmp_path / "verdicts.jsonl"
    verdict.write_text(make_verdict(read_sample(out)[0], "good").to_json() + "\n")
    where, command = {
        "review": (out / "review", ["review", str(out), "--no-serve"]),
        "review/verdicts.jsonl": (out / "review" / "verdicts.jsonl",
                                  ["review", str(out), "--import", str(verdict)]),
        "report.html.tmp": (out / "report.html.tmp", ["report", str(out)]),
        "export": (out.parent / "out.export", ["export", str(out), "--format", "alpaca"]),
    }[link]
    where.parent.mkdir(exist_ok=True)
    target = elsewhere if link in ("review", "export") else elsewhere / "file"
    where.symlink_to(target)
    capsys.readouterr()
    assert main(command) == 2
    err = capsys.readouterr().err.strip().splitlines()
    # "refusing to write" (confine: a link out of the folder) or "refusing to follow" (the
    # review log, opened without following links): one line either way
    assert len(err) == 1 and err[0].startswith("error: refusing to "), err
    assert str(where) in err[0] and "symbolic link" in err[0]
    assert list(elsewhere.iterdir()) == []


def test_verdicts_survive_a_rerun_and_overwrite(tmp_path, capsys):
    """After `instructbeam review`, a plain rerun runs and keeps review/; so does
    --overwrite, also of a folder that is no run of ours."""
    config = _config(tmp_path)
    out = tmp_path / "out"
    assert main(["run", config]) == 0
    assert main(["review", str(out), "--no-serve"]) == 0
    verdict = tmp_path / "verdicts.jsonl"
    verdict.write_text(make_verdict(read_sample(out)[0], "bad", "wrong").to_json() + "\n")
    assert main(["review", str(out), "--import", str(verdict)]) == 0
    log = (out / "review" / "verdicts.jsonl").read_bytes()
    for extra in ([], ["--overwrite"]):
        capsys.readouterr()
        assert main(["run", config, *extra]) == 0
        assert (out / "review" / "verdicts.jsonl").read_bytes() == log
        assert "instructbeam: kept review/ of the previous output (1 verdict line)" in \
            capsys.readouterr().err
    (out / "manifest.json").unlink()  # no run of ours any more
    assert main(["run", config, "--overwrite"]) == 0
    assert (out / "review" / "verdicts.jsonl").read_bytes() == log


@pytest.mark.parametrize("field", ["illegal_words_file", "cache_off"])
def test_overwrite_never_replaces_a_folder_holding_what_the_run_reads(tmp_path, capsys, field):
    """The issue's cases: the run's own illegal-words file, and the response cache when
    caching is off (a later run with caching on would read it)."""
    out = tmp_path / "out"
    held = out / ("words.txt" if field == "illegal_words_file" else "cache")
    out.mkdir()
    held.write_text("forbidden\n") if field == "illegal_words_file" else held.mkdir()
    extra, what = {
        "illegal_words_file": (["--set", f"filters.rules.illegal_words_file={held}"],
                               "filters.rules.illegal_words_file"),
        "cache_off": (["--no-cache", "--set", f"cache.dir={held}"], "cache.dir"),
    }[field]
    assert main(["run", _config(tmp_path), *extra, "--overwrite"]) == 2
    assert f"contains {what} ({held}); instructbeam never replaces it" in _last_error(capsys)
    assert held.exists()


# -- remote (memtest://, standing in for gs://) -------------------------------------------------

@pytest.fixture
def bucket():
    memfs.FILES.clear()
    yield memfs.FILES
    memfs.FILES.clear()


def _objects(files: dict[str, bytes], prefix: str) -> dict[str, bytes]:
    return {k[len(prefix) + 1:]: v for k, v in files.items() if k.startswith(prefix + "/")}


def _remote_manifest(files: dict[str, bytes], out: str) -> dict:
    return json.loads(files[f"{out}/manifest.json"])


def test_remote_run_replaces_only_a_previous_complete_run(tmp_path, bucket, capsys):
    out = "memtest://bucket/runs/a"
    config = _config(tmp_path, out)
    assert main(["run", config]) == 0
    first = _objects(bucket, out)
    assert {"manifest.json", "report.html", "README.md",
            "data/part-00000-of-00001.parquet"} <= set(first)
    assert b"<!DOCTYPE html>" in first["report.html"]
    assert sorted(_remote_manifest(bucket, out)["written"]) == sorted(
        set(first) - {"manifest.json"})
    assert main(["run", config]) == 0  # a complete earlier run: replaced, nothing else left
    assert set(bucket) == {f"{out}/{name}" for name in first}

    bucket[f"{out}/notes.txt"] = b"mine"
    before = dict(bucket)
    assert main(["run", config]) == 2
    err = _last_error(capsys)
    assert f"output dir {out} holds files this tool did not write: notes.txt" in err
    assert bucket == before
    assert main(["run", config, "--overwrite"]) == 0
    assert f"{out}/notes.txt" not in bucket


def test_remote_refusals(tmp_path, bucket, capsys):
    bucket["memtest://bucket/runs/b/x.parquet"] = b"not ours"
    config = _config(tmp_path, "memtest://bucket/runs/b")
    assert main(["run", config]) == 2
    assert "is not a finished instructbeam run (no manifest.json)" in _last_error(capsys)
    assert main(["run", config, "--set", "output_dir=memtest://bucket", "--overwrite"]) == 2
    assert "is a bucket root" in _last_error(capsys)
    bucket["memtest://bucket/runs/in/data.jsonl"] = json.dumps(ROWS[0]).encode() + b"\n"
    assert main(["run", config, "--set", "output_dir=memtest://bucket/runs", "--overwrite",
                 "--set", "input.path=memtest://bucket/runs/in/*.jsonl"]) == 2
    assert "contains input.path (memtest://bucket/runs/in/*.jsonl)" in _last_error(capsys)
    assert set(bucket) == {"memtest://bucket/runs/b/x.parquet",
                           "memtest://bucket/runs/in/data.jsonl"}


@pytest.mark.parametrize("fail_at", [1, 2, 3])
def test_a_failure_during_the_remote_swap_keeps_the_old_output(tmp_path, bucket, capsys,
                                                               monkeypatch, fail_at):
    """Fail the n-th rename, part way (1: the old manifest aside, 2: the other old objects
    aside, 3: the new objects in): the old output is back in place, whole, and no staging or
    aside copy is left."""
    out = "memtest://bucket/runs/c"
    config = _config(tmp_path, out)
    assert main(["run", config]) == 0
    before = dict(bucket)
    real_rename = memfs.MemoryFileSystem.rename
    calls = []

    def failing_rename(self, sources, destinations):
        calls.append(list(sources))
        if len(calls) == fail_at:
            # move part of the batch first, as an object store that fails midway would
            real_rename(self, sources[:1], destinations[:1])
            raise OSError("injected failure")
        return real_rename(self, sources, destinations)

    monkeypatch.setattr(memfs.MemoryFileSystem, "rename", failing_rename)
    with pytest.raises(OSError, match="injected failure"):
        main(["run", config])
    assert bucket == before
    assert not [k for k in bucket if ".staging-" in k or ".old-" in k]


def test_a_failing_remote_job_leaves_no_staging(tmp_path, bucket, monkeypatch, capsys):
    out = "memtest://bucket/runs/d"
    config = _config(tmp_path, out)
    assert main(["run", config]) == 0
    before = dict(bucket)
    from pipelines import run as run_module

    def broken_card(output_dir, manifest, recipe):
        raise RuntimeError("injected after the job wrote its shards")

    monkeypatch.setattr(run_module, "write_card", broken_card)
    with pytest.raises(RuntimeError, match="injected"):
        main(["run", config])
    assert bucket == before
