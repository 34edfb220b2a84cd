"""The verdict log survives what happens to files: a write cut short by a crash, links planted
in the run folder, and an exported file whose texts were edited (issue 24, section 5)."""

from __future__ import annotations

import base64
import json
import logging
import os
from pathlib import Path

import pytest
from review_fakes import audit_row, small_run, write_audit

from pipelines.cli import main
from pipelines.errors import InputError
from pipelines.outputs.review import (
    append_verdicts,
    import_verdicts,
    make_verdict,
    read_log,
    read_sample,
    read_verdicts,
    verdicts_path,
)
from pipelines.outputs.review_page import render, write_page


def _good(run: Path, i: int = 0, verdict: str = "good"):
    return make_verdict(read_sample(run)[i], verdict, at=f"2026-01-01T00:00:0{i}.000Z")


def _torn(run: Path, torn: bytes) -> bytes:
    """A log with one whole verdict and an unfinished line after it, as a crash leaves it."""
    append_verdicts(run, [_good(run, 0)])
    whole = verdicts_path(run).read_bytes()
    with verdicts_path(run).open("ab") as handle:
        handle.write(torn)
    return whole


# -- a write cut short -----------------------------------------------------------------------

TORN = b'{"id": "r005", "stage": "instance_gen", "source": "seed", "verdict": "go'


@pytest.mark.parametrize("torn", [TORN, TORN + "é".encode()[:1]], ids=["json", "utf8-cut"])
def test_an_unfinished_last_line_is_set_aside_and_said(tmp_path, caplog, torn):
    run = small_run(tmp_path / "run")
    _torn(run, torn)
    with caplog.at_level(logging.WARNING):
        verdicts = read_verdicts(run)
    assert {i: v.verdict for i, v in verdicts.items()} == {"r004": "good"}
    assert "verdicts.jsonl:2: an unfinished last line" in caplog.text
    assert "set aside" in caplog.text
    assert "an unfinished last line" in render(run)  # the page loads, and says it


def test_the_next_verdict_starts_on_its_own_line_and_the_torn_bytes_are_kept(tmp_path, caplog):
    run = small_run(tmp_path / "run")
    whole = _torn(run, TORN)
    with caplog.at_level(logging.WARNING):
        append_verdicts(run, [_good(run, 1, "bad")])
    log = verdicts_path(run).read_bytes()
    assert log.startswith(whole) and log.count(b"\n") == 2 and TORN not in log
    assert [(v.id, v.verdict) for v in read_log(verdicts_path(run))] == [
        ("r004", "good"), ("r005", "bad")]
    aside = [json.loads(x) for x in (run / "review" / "verdicts.torn").read_text().splitlines()]
    assert len(aside) == 1 and base64.b64decode(aside[0]["base64"]) == TORN
    assert aside[0]["offset"] == len(whole)
    assert "was moved to" in caplog.text


def test_a_line_fused_by_an_older_version_keeps_its_verdict(tmp_path, caplog):
    """Before the fix the next append was written right after the torn bytes."""
    run = small_run(tmp_path / "run")
    _torn(run, TORN + (_good(run, 2, "bad").to_json() + "\n").encode())
    with caplog.at_level(logging.WARNING):
        verdicts = read_verdicts(run)
    assert {i: v.verdict for i, v in verdicts.items()} == {"r004": "good", "r001": "bad"}
    assert "fused with the next verdict is set aside" in caplog.text


def test_the_review_command_with_a_torn_log_works_and_says_it(tmp_path, capsys, caplog):
    run = small_run(tmp_path / "run")
    _torn(run, TORN)
    with caplog.at_level(logging.WARNING):
        assert main(["review", str(run), "--no-serve"]) == 0
    assert "(5 audit rows, 1 reviewed)" in capsys.readouterr().out
    assert "an unfinished last line" in caplog.text


def test_every_append_is_fsynced(tmp_path, monkeypatch):
    run = small_run(tmp_path / "run")
    synced: list[int] = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real(fd))[1])
    for i in range(3):
        synced.clear()
        append_verdicts(run, [_good(run, i)])
        assert synced, f"verdict {i} was not flushed to disk"


# -- links planted in the run folder ---------------------------------------------------------

@pytest.mark.parametrize("target", ["../manifest.json", "../audit/new.jsonl", "/OUTSIDE/v"])
def test_a_linked_verdict_log_is_never_followed(tmp_path, target):
    run = small_run(tmp_path / "run")
    (tmp_path / "OUTSIDE").mkdir()
    (run / "review").mkdir()
    target = target.replace("/OUTSIDE", str(tmp_path / "OUTSIDE"))
    os.symlink(target, verdicts_path(run))  # the last two dangle
    manifest = (run / "manifest.json").read_bytes()
    with pytest.raises(InputError, match="symbolic link"):
        append_verdicts(run, [_good(run)])
    with pytest.raises(InputError, match="symbolic link"):
        read_verdicts(run)
    assert (run / "manifest.json").read_bytes() == manifest
    assert not (run / "audit" / "new.jsonl").exists()
    assert list((tmp_path / "OUTSIDE").iterdir()) == []


@pytest.mark.parametrize("target", ["../manifest.json", "/OUTSIDE/page"])
def test_a_planted_page_tmp_link_is_never_followed(tmp_path, target):
    run = small_run(tmp_path / "run")
    (tmp_path / "OUTSIDE").mkdir()
    (run / "review").mkdir()
    target = target.replace("/OUTSIDE", str(tmp_path / "OUTSIDE"))
    os.symlink(target, run / "review" / "index.html.tmp")
    manifest = (run / "manifest.json").read_bytes()
    page = write_page(run)
    assert page.is_file() and not page.is_symlink()
    assert (run / "manifest.json").read_bytes() == manifest
    assert list((tmp_path / "OUTSIDE").iterdir()) == []
    assert os.readlink(run / "review" / "index.html.tmp") == target  # left as it was
    assert sorted(p.name for p in (run / "review").iterdir()) == ["index.html", "index.html.tmp"]


# -- importing ------------------------------------------------------------------------------

def test_import_takes_the_texts_from_the_sample_and_only_the_verdict_from_the_file(tmp_path,
                                                                                 caplog):
    run = small_run(tmp_path / "run")
    row = read_sample(run)[2]
    forged = json.loads(make_verdict(row, "good", "fine", at="2026-01-01T00:00:00.000Z")
                        .to_json()) | {"output": "FORGED LABEL", "instruction": "forged"}
    exported = tmp_path / "export.jsonl"
    exported.write_text(json.dumps(forged) + "\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        assert import_verdicts(run, exported) == 1
    line = read_verdicts(run)[row.id]
    assert (line.verdict, line.reason, line.instruction, line.output) == (
        "good", "fine", row.instruction, row.output)
    assert b"FORGED" not in verdicts_path(run).read_bytes()
    assert "carry texts that differ" in caplog.text and f"{exported}:1" in caplog.text
    assert import_verdicts(run, exported) == 0  # already in force


def test_a_whole_last_line_without_its_newline_is_a_verdict_not_a_tear(tmp_path, caplog):
    """A hand-edited log saved without a final newline loses nothing."""
    run = small_run(tmp_path / "run")
    path = verdicts_path(run)
    path.parent.mkdir(parents=True)
    path.write_text(_good(run, 0).to_json(), encoding="utf-8")  # no "\n"
    with caplog.at_level(logging.WARNING):
        assert set(read_verdicts(run)) == {"r004"}
        append_verdicts(run, [_good(run, 1, "bad")])
    assert caplog.text == ""
    assert [v.id for v in read_log(path)] == ["r004", "r005"]
    assert not (run / "review" / "verdicts.torn").exists()


def test_a_dialogue_verdict_records_every_turn_it_judged(tmp_path):
    turns = [{"role": r, "content": f"turn {n}"} for n, r in enumerate(["user", "assistant"] * 2)]
    run = write_audit(tmp_path / "run", {"ultrachat": [
        audit_row(1, instruction="turn 0", output="turn 1", messages=turns)]})
    row = read_sample(run)[0]
    append_verdicts(run, [make_verdict(row, "bad", "turn 3 drifts")])
    line = json.loads(verdicts_path(run).read_text(encoding="utf-8"))
    assert line["messages"] == turns and line["output"] == "turn 1"
    exported = tmp_path / "export.jsonl"  # the page's export: no turns in it
    exported.write_text(json.dumps({k: v for k, v in line.items() if k != "messages"}
                                   | {"verdict": "good", "at": "2099-01-01T00:00:00.000Z"})
                        + "\n", encoding="utf-8")
    assert import_verdicts(run, exported) == 1
    assert read_verdicts(run)[row.id].messages == tuple((t["role"], t["content"]) for t in turns)
