"""The human review on a real (scripted) run: `instructbeam review` writes the page, the local
server appends the verdicts the page posts, `instructbeam inspect` reports precision, and a
rerun into the same folder does not throw the verdicts away."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ROOT
from helpers import scripted_config
from review_fakes import small_run

from pipelines.cli import main
from pipelines.outputs.review import (
    append_verdicts,
    make_verdict,
    read_sample,
    read_verdicts,
    verdicts_path,
)
from pipelines.outputs.review_server import ReviewServer
from pipelines.run import run


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> tuple[Path, object]:
    from fakes import ScriptedServer

    server = ScriptedServer()
    server.start()
    try:
        out = tmp_path_factory.mktemp("review") / "out"
        cfg = scripted_config(server.base_url, out, None, max_prompts=4)
        run(cfg)
    finally:
        server.stop()
    return out, cfg


@pytest.fixture
def review_server(finished_run) -> Iterator[ReviewServer]:
    server = ReviewServer(finished_run[0])
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _post(server: ReviewServer, body: object, headers: dict[str, str] | None = None,
          ) -> tuple[int, str]:
    request = urllib.request.Request(
        server.url + "verdicts", data=json.dumps(body).encode("utf-8"), method="POST",
        headers={"Content-Type": "application/json", "Origin": server.url.rstrip("/")}
        | (headers or {}))
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read().decode("utf-8")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8")


def test_review_page_server_verdicts_and_inspect(finished_run, review_server, capsys):
    out, _ = finished_run
    assert main(["review", str(out), "--no-serve"]) == 0
    sample = read_sample(out)
    assert len(sample) >= 4 and (out / "review" / "index.html").is_file()
    assert f"({len(sample)} audit rows, 0 reviewed)" in capsys.readouterr().out

    with urllib.request.urlopen(review_server.url, timeout=5) as response:
        page = response.read().decode("utf-8")
        assert response.headers["Content-Security-Policy"].startswith("default-src 'none'")
    assert sample[0].id in page and "<script>" in page

    a, b, c = sample[:3]
    for row, verdict, reason in ((a, "good", ""), (b, "bad", "answer is cut off"),
                                 (c, "bad", ""), (c, "undone", "")):
        status, body = _post(review_server, {"id": row.id, "verdict": verdict, "reason": reason})
        assert status == 200, body
        assert json.loads(body)["verdict"] == verdict
    lines = [json.loads(x) for x in verdicts_path(out).read_text().splitlines()]
    assert [(x["id"], x["verdict"]) for x in lines] == [
        (a.id, "good"), (b.id, "bad"), (c.id, "bad"), (c.id, "undone")]
    assert set(lines[1]) == {"id", "stage", "source", "verdict", "reason", "instruction",
                             "input", "output", "at"}
    assert (lines[1]["reason"], lines[1]["output"], lines[1]["source"]) == (
        "answer is cut off", b.output, b.source)
    assert set(read_verdicts(out)) == {a.id, b.id}

    assert main(["inspect", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "accounting: OK" in printed
    assert (f"human review ({out}/review/verdicts.jsonl): 2 of {len(sample)} audit rows "
            f"reviewed, {len(sample) - 2} unreviewed") in printed
    assert "precision = good / (good + bad), with a 95% Wilson interval" in printed
    stage_lines = [x.split() for x in printed.splitlines() if x.strip().startswith(a.stage)]
    assert stage_lines and stage_lines[-1][1:5] == ["1", "1", "0", "0.500"], printed


@pytest.mark.parametrize(("body", "headers", "status"), [
    ({"id": "nope", "verdict": "good"}, {}, 400),
    ({"verdict": "maybe"}, {}, 400),
    (None, {"Origin": "http://evil.example"}, 403),
    (None, {"Host": "evil.example:80"}, 421),
    (None, {"Content-Type": "application/x-www-form-urlencoded"}, 415),
])
def test_the_server_refuses_what_is_not_its_own_page(finished_run, review_server, body, headers,
                                                     status):
    out, _ = finished_run
    row = read_sample(out)[0]
    before = verdicts_path(out).read_bytes() if verdicts_path(out).exists() else b""
    payload = {"id": row.id, "verdict": "good"} | (body or {})
    assert _post(review_server, payload, headers)[0] == status
    after = verdicts_path(out).read_bytes() if verdicts_path(out).exists() else b""
    assert after == before


def test_import_then_inspect(finished_run, tmp_path, capsys):
    out, _ = finished_run
    row = read_sample(out)[-1]
    exported = tmp_path / "exported.jsonl"
    exported.write_text(json.dumps({
        "id": row.id, "stage": row.stage, "source": row.source, "verdict": "skip",
        "reason": "cannot tell", "instruction": row.instruction, "input": row.input,
        "output": row.output, "at": "2030-01-01T00:00:00.000Z"}) + "\n", encoding="utf-8")
    assert main(["review", str(out), "--import", str(exported)]) == 0
    assert "appended 1 verdicts" in capsys.readouterr().out
    assert read_verdicts(out)[row.id].reason == "cannot tell"
    assert main(["review", str(out), "--import", str(exported)]) == 0
    assert "appended 0 verdicts" in capsys.readouterr().out
    exported.write_text("{broken\n")
    assert main(["review", str(out), "--import", str(exported)]) == 2
    assert f"{exported}:1: not JSON" in capsys.readouterr().err


def test_a_busy_port_is_one_line_and_exit_2(finished_run, capsys):
    out, _ = finished_run
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        assert main(["review", str(out), "--port", str(busy.getsockname()[1])]) == 2
    assert "cannot serve on 127.0.0.1" in capsys.readouterr().err


def test_review_of_a_folder_that_is_no_run_is_exit_2(tmp_path, capsys):
    assert main(["review", str(tmp_path), "--no-serve"]) == 2
    assert "no manifest.json" in capsys.readouterr().err


def test_a_rerun_keeps_the_verdicts(scripted_server, tmp_path, capsys):
    """Human verdicts are not the run's: after `instructbeam review`, a plain rerun into the
    folder runs (review/ does not make it refuse), carries review/ into the new output and
    says so; `--overwrite` never deletes them either."""
    server = scripted_server()
    out = tmp_path / "out"
    cfg = scripted_config(server.base_url, out, None, max_prompts=4)
    run(cfg)
    assert main(["review", str(out), "--no-serve"]) == 0
    append_verdicts(out, [make_verdict(read_sample(out)[0], "good", "clear")])
    log = verdicts_path(out).read_bytes()
    capsys.readouterr()
    for overwrite in (False, True):
        run(cfg, overwrite=overwrite)
        assert verdicts_path(out).read_bytes() == log
        assert (out / "review" / "index.html").exists()
        err = capsys.readouterr().err
        assert f"kept review/ of the previous output (1 verdict line) in {out}/review" in err
    manifest = json.loads((out / "manifest.json").read_text())
    assert not [name for name in manifest["written"] if name.startswith("review/")]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_the_cli_serves_until_ctrl_c(tmp_path):
    """`instructbeam review RUN` prints where it serves, takes verdicts, and Ctrl-C ends it
    with exit 0 — also when it was started with SIGINT ignored, as a background job is (the
    CLI would inherit that and never stop)."""
    run_dir = small_run(tmp_path / "run")
    process = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "review", str(run_dir)],
                               cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        assert "review/index.html (5 audit rows, 0 reviewed)" in process.stdout.readline()
        url = re.search(r"reviewing at (http://127\.0\.0\.1:\d+/) ", process.stdout.readline())
        assert url, process.stderr.read()
        request = urllib.request.Request(
            url.group(1) + "verdicts", method="POST", data=b'{"id": "r001", "verdict": "good"}',
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
        process.send_signal(signal.SIGINT)
        # generous: this checks a clean exit, not its speed (CI machines can be loaded)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert {i: v.verdict for i, v in read_verdicts(run_dir).items()} == {"r001": "good"}


def test_a_crash_mid_write_costs_one_line_not_the_review(finished_run, review_server, capsys,
                                                         caplog):
    """A torn last line (the server killed mid-write) is set aside: `inspect` and the page
    still work and say so, and the next verdict lands on its own line."""
    out, _ = finished_run
    log = verdicts_path(out)
    before = log.read_bytes() if log.exists() else None
    sample = read_sample(out)
    try:
        append_verdicts(out, [make_verdict(sample[0], "good")])
        with log.open("ab") as handle:
            handle.write(b'{"id": "' + sample[1].id.encode() + b'", "stage": "ins')
        with caplog.at_level("WARNING"):
            assert main(["inspect", str(out)]) == 0
        assert "an unfinished last line" in caplog.text
        assert "human review" in capsys.readouterr().out
        with urllib.request.urlopen(review_server.url, timeout=5) as response:
            assert "an unfinished last line" in response.read().decode("utf-8")
        status, body = _post(review_server, {"id": sample[1].id, "verdict": "bad"})
        assert status == 200, body
        assert [json.loads(x)["verdict"] for x in log.read_text().splitlines()][-2:] == [
            "good", "bad"]
        assert (out / "review" / "verdicts.torn").is_file()
    finally:
        (out / "review" / "verdicts.torn").unlink(missing_ok=True)
        if before is None:
            log.unlink(missing_ok=True)
        else:
            log.write_bytes(before)
