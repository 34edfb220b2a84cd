"""Ctrl-C during `instructbeam run`: one line, exit 130, nothing written, no server left, and
the same command resumes from the answers the cache gained.

The CLI runs as a subprocess in its own session and the whole group gets SIGINT, as a
terminal's Ctrl-C would send it. Two backends: `openai` against the scripted server (slowed
down), and `vllm`, whose server the run starts itself: a fake `vllm.entrypoints.openai.
api_server` module (first on PYTHONPATH) serves the same scripted answers, so the run's own
server start and stop are exercised without vLLM.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import ROOT
from fakes import FaultPlan

from pipelines.generators import vllm_server

SLOW = FaultPlan(p_delay=1.0, delay_s=0.3, max_faults=10**9)  # every answer 0.3 s late
LINE = re.compile(r"^interrupted: nothing written; (\d+) answers? cached; "
                  r"the same command resumes$")

FAKE_VLLM = textwrap.dedent('''
    """Fake vLLM OpenAI server: the scripted answers, FAKE_VLLM_DELAY_S late each."""
    import argparse, json, os, threading, time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from fakes import scripted_completion

    parser = argparse.ArgumentParser()
    parser.add_argument("--served-model-name")
    parser.add_argument("--host")
    parser.add_argument("--port", type=int)
    args, _ = parser.parse_known_args()
    time.sleep(float(os.environ.get("FAKE_VLLM_START_S", "0")))  # loading the model
    delay = float(os.environ.get("FAKE_VLLM_DELAY_S", "0"))
    calls = os.environ["FAKE_VLLM_CALLS"]
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def _send(self, payload):
            raw = json.dumps(payload).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def do_GET(self):
            self._send({"data": [{"id": args.served_model_name}]})

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            time.sleep(delay)
            text, finish = scripted_completion(body["prompt"], int(body.get("seed") or 0))
            with lock, open(calls, "a") as fh:
                fh.write("call\\n")
            self._send({"choices": [{"index": 0, "text": text, "finish_reason": finish}],
                        "usage": {"prompt_tokens": 1, "completion_tokens": 1}})

    ThreadingHTTPServer((args.host, args.port), Handler).serve_forever()
''')


def _config(tmp_path: Path, generator: list[str]) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text("\n".join([
        "recipe: self_instruct", f"output_dir: {tmp_path / 'out'}", "num_shards: 2",
        "generator:", *(f"  {line}" for line in generator),
        "  model: scripted", "  max_concurrency: 2", "  timeout_s: 10",
        "self_instruct:", "  num_instructions: 30", "  prompts_per_round: 4",
        "  max_prompts: 12", f"cache:\n  dir: {tmp_path / 'cache'}"]) + "\n")
    return path


def _fake_vllm_env(tmp_path: Path, calls_file: Path) -> dict[str, str]:
    """Environment that makes `python -m vllm.entrypoints.openai.api_server` the fake."""
    fake = tmp_path / "fake_vllm"
    module = fake / "vllm" / "entrypoints" / "openai"
    module.mkdir(parents=True)
    for package in (fake / "vllm", fake / "vllm" / "entrypoints", module):
        (package / "__init__.py").write_text("")
    (module / "api_server.py").write_text(FAKE_VLLM)
    return {"PYTHONPATH": os.pathsep.join([str(fake), str(ROOT / "tests"), str(ROOT)]),
            "FAKE_VLLM_CALLS": str(calls_file)}


def _cache_entries(tmp_path: Path) -> int:
    return len(list((tmp_path / "cache").rglob("*.json")))


def _calls(manifest: dict, name: str) -> int:
    return sum(u.get(name, 0) for u in manifest["run"]["generator_usage"].values())


@pytest.mark.parametrize("backend", ["openai", "vllm"])
def test_ctrl_c_prints_one_line_and_the_same_command_resumes(
        backend, scripted_server, tmp_path):
    env = dict(os.environ, INSTRUCTBEAM_PROGRESS="1")
    # servers this pytest process already owns (the e2e tests' shared session servers)
    servers_before = set(vllm_server.find_leftover_servers(owner_pid=os.getpid()))
    if backend == "openai":
        slow = scripted_server(faults=SLOW)
        config = _config(tmp_path, ["backend: openai", f"base_url: {slow.base_url}",
                                    "revision: scripted-v1"])
        calls_made = lambda: slow.stats.requests  # noqa: E731
    else:
        calls_file = tmp_path / "fake_calls.txt"
        env |= _fake_vllm_env(tmp_path, calls_file) | {"FAKE_VLLM_DELAY_S": "0.3"}
        config = _config(tmp_path, ["backend: vllm", "server_args: []"])
        calls_made = lambda: len(calls_file.read_text().splitlines())  # noqa: E731
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("previous run")

    # --overwrite: the run may replace the folder, but only once it has finished
    proc = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "run", str(config),
                             "--overwrite"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    deadline = time.monotonic() + 180
    while _cache_entries(tmp_path) < 3:
        assert proc.poll() is None, proc.communicate()[0][-3000:]
        assert time.monotonic() < deadline, "no answer was cached within 180 s"
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C sends: the whole group
    printed, _ = proc.communicate(timeout=120)
    leftover = vllm_server.find_leftover_servers(owner_pid=proc.pid)

    assert proc.returncode == 130, printed[-3000:]
    assert "Traceback" not in printed and "Error" not in printed, printed[-3000:]
    lines = printed.splitlines()
    assert lines[0].startswith("instructbeam: running self_instruct")
    # progress and server-start lines only, and the one-time warning that the fake vLLM model
    # has no local revision
    allowed = ("[", "instructbeam: ", "WARNING pipelines.generators.backends: generator model")
    assert all(line.startswith(allowed)
               for line in lines[1:-1]), printed
    match = LINE.match(lines[-1])
    assert match, lines[-1]
    cached = int(match.group(1))
    assert 3 <= cached <= _cache_entries(tmp_path)
    assert sorted(p.name for p in tmp_path.glob("out*")) == ["out"], "staging left behind"
    assert [p.name for p in out.iterdir()] == ["keep.txt"], "the output dir was touched"
    assert (out / "keep.txt").read_text() == "previous run"
    assert leftover == [], f"vLLM server processes left behind: {leftover}"

    paid_before = calls_made()
    if backend == "openai":
        fast = scripted_server()
        config.write_text(config.read_text().replace(slow.base_url, fast.base_url))
        calls_made = lambda: fast.stats.requests  # noqa: E731
    else:
        env["FAKE_VLLM_DELAY_S"] = "0"
        calls_file.write_text("")
    rerun = subprocess.run([sys.executable, "-m", "pipelines.cli", "run", str(config),
                            "--overwrite"],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    manifest = json.loads((out / "manifest.json").read_text())
    total = _calls(manifest, "requests")
    assert _calls(manifest, "cache_hits") >= cached
    assert calls_made() == _calls(manifest, "calls") <= total - cached
    assert set(vllm_server.find_leftover_servers(owner_pid=os.getpid())) <= servers_before
    print(f"\n{backend}: interrupted after {paid_before} calls with {cached} answers cached; "
          f"rerun: {calls_made()} calls of {total} requests")


def test_ctrl_c_while_the_model_loads_stops_the_server_without_waiting(tmp_path):
    env = os.environ | _fake_vllm_env(tmp_path, tmp_path / "calls.txt") | {
        "FAKE_VLLM_START_S": "90"}
    config = _config(tmp_path, ["backend: vllm", "server_args: []"])
    proc = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "run", str(config)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    deadline = time.monotonic() + 180
    while not vllm_server.find_leftover_servers(owner_pid=proc.pid):
        assert proc.poll() is None, proc.communicate()[0][-3000:]
        assert time.monotonic() < deadline, "the server was never started"
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGINT)
    t0 = time.monotonic()
    printed, _ = proc.communicate(timeout=120)
    took = time.monotonic() - t0
    assert proc.returncode == 130 and "Traceback" not in printed, printed[-3000:]
    assert printed.splitlines()[-1] == ("interrupted: nothing written; 0 answers cached; "
                                        "the same command resumes")
    assert took < 30, f"exit waited {took:.0f} s for the model load"
    assert vllm_server.find_leftover_servers(owner_pid=proc.pid) == []
    assert sorted(p.name for p in tmp_path.glob("out*")) == []
    print(f"\nCtrl-C during the model load: exit after {took:.1f} s")
