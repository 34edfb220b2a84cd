"""VLLMServer lifecycle against a fake OpenAI server (no vLLM needed).

The fake is a stdlib http.server script launched through the same guard as the real server,
so these tests cover the parts that matter most and are hardest to see in a real run: the
owner dying with SIGKILL, startup failures, and group termination.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from pipelines.generators import vllm_server
from pipelines.generators.vllm_server import ServerSpec, VLLMServer, VLLMServerError

REPO_ROOT = Path(__file__).resolve().parents[2]

FAKE_SERVER = textwrap.dedent(
    '''
    """Fake vLLM: serves GET /v1/models; forks a worker into its group like vLLM does."""
    import argparse, json, os, sys, time
    from http.server import BaseHTTPRequestHandler, HTTPServer

    parser = argparse.ArgumentParser()
    parser.add_argument("--model")
    parser.add_argument("--served-model-name")
    parser.add_argument("--host")
    parser.add_argument("--port", type=int)
    parser.add_argument("--max-model-len", type=int, default=None)
    parser.add_argument("--fail", action="store_true")
    parser.add_argument("--slow", type=float, default=0.0)
    parser.add_argument("--worker-file", default=None)
    args, _ = parser.parse_known_args()
    print("fake server starting", args, flush=True)
    if args.fail:
        print("FATAL: pretend the model failed to load", flush=True)
        sys.exit(1)
    if args.worker_file:
        pid = os.fork()
        if pid == 0:  # a worker that would be orphaned if only the leader were killed
            while True:
                time.sleep(1)
        with open(args.worker_file, "w") as fh:
            fh.write(str(pid))
    time.sleep(args.slow)
    name = args.served_model_name

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path != "/v1/models":
                self.send_response(404)
                self.end_headers()
                return
            body = json.dumps({"object": "list", "data": [{"id": name, "object": "model"}]})
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *a):
            pass

    HTTPServer((args.host, args.port), Handler).serve_forever()
    '''
)


@pytest.fixture
def fake_launcher(tmp_path: Path) -> tuple[str, ...]:
    script = tmp_path / "fake_vllm.py"
    script.write_text(FAKE_SERVER)
    return (sys.executable, str(script))


def _spec(launcher: tuple[str, ...], *extra: str, timeout: float = 30.0) -> ServerSpec:
    return ServerSpec(
        model="fake-model",
        served_model_name="fake",
        extra_args=tuple(extra),
        startup_timeout_s=timeout,
        launcher=launcher,
    )


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _wait_gone(pids: list[int], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    alive = [p for p in pids if not _gone(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = [p for p in alive if not _gone(p)]
    return alive


def test_spec_key_is_stable_and_ignores_timeout() -> None:
    a = ServerSpec(model="m", served_model_name="s", startup_timeout_s=10)
    b = ServerSpec(model="m", served_model_name="s", startup_timeout_s=999)
    c = ServerSpec(model="m", served_model_name="s", max_model_len=2048)
    assert a.key == b.key
    assert a.key != c.key
    assert len(a.key) == 16
    assert a.launcher == (sys.executable, "-m", "vllm.entrypoints.openai.api_server")
    cmd = c.command(1234)
    assert cmd[-3:] == ["--max-model-len", "2048", "--enforce-eager"]
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1"


def test_start_health_base_url_stop(fake_launcher: tuple[str, ...], tmp_path: Path) -> None:
    worker_file = tmp_path / "worker.pid"
    spec = _spec(fake_launcher, "--worker-file", str(worker_file))
    server = VLLMServer(spec, log_dir=tmp_path)
    with server:
        assert server.is_running()
        assert server.base_url == f"http://127.0.0.1:{server.port}/v1"
        with urllib.request.urlopen(f"{server.base_url}/models", timeout=5) as resp:
            ids = [m["id"] for m in json.loads(resp.read())["data"]]
        assert ids == ["fake"]
        assert server.log_path.parent == tmp_path
        assert "fake server starting" in server.log_path.read_text()
        server_pid = server.server_pid
        guard_pid = server.guard_pid
        assert server_pid is not None and guard_pid is not None
        worker_pid = int(worker_file.read_text())
        env = psutil.Process(server_pid).environ()
        assert env[vllm_server.OWNER_ENV] == str(os.getpid())
        assert env["VLLM_CPU_KVCACHE_SPACE"] == os.environ.get("VLLM_CPU_KVCACHE_SPACE", "2")
        assert server.start() is server  # already running: no second launch
    assert not server.is_running()
    assert _wait_gone([server_pid, guard_pid, worker_pid], 2) == []
    server.stop()  # idempotent


def test_owner_sigkill_leaves_no_server(fake_launcher: tuple[str, ...], tmp_path: Path) -> None:
    worker_file = tmp_path / "worker.pid"
    child = textwrap.dedent(
        f"""
        import os, sys
        from pipelines.generators.vllm_server import ServerSpec, VLLMServer
        spec = ServerSpec(model="fake-model", served_model_name="fake",
                          extra_args=("--worker-file", {str(worker_file)!r}),
                          startup_timeout_s=30, launcher={fake_launcher!r})
        server = VLLMServer(spec, log_dir={str(tmp_path)!r})
        server.start()
        print(server.server_pid, server.guard_pid, flush=True)
        os.kill(os.getpid(), 9)
        """
    )
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])
    )
    proc = subprocess.run(
        [sys.executable, "-c", child], capture_output=True, text=True, env=env, timeout=60
    )
    assert proc.returncode == -9, proc.stderr
    server_pid, guard_pid = (int(x) for x in proc.stdout.split())
    worker_pid = int(worker_file.read_text())
    assert _wait_gone([server_pid, guard_pid, worker_pid], 5) == []


def test_startup_failure_raises_with_log_tail(
    fake_launcher: tuple[str, ...], tmp_path: Path
) -> None:
    server = VLLMServer(_spec(fake_launcher, "--fail"), log_dir=tmp_path)
    t0 = time.monotonic()
    with pytest.raises(VLLMServerError) as err:
        server.start()
    assert time.monotonic() - t0 < 15  # fails fast, not at the timeout
    assert "exited with code 1" in str(err.value)
    assert "FATAL: pretend the model failed to load" in str(err.value)
    assert not server.is_running()


def test_startup_timeout_stops_server(fake_launcher: tuple[str, ...], tmp_path: Path) -> None:
    server = VLLMServer(_spec(fake_launcher, "--slow", "60", timeout=2), log_dir=tmp_path)
    with pytest.raises(VLLMServerError, match="not ready after"):
        server.start()
    assert not server.is_running()
    pid = server.server_pid
    assert pid is None or _wait_gone([pid], 2) == []


def test_registry_shares_one_server_per_spec(
    fake_launcher: tuple[str, ...], tmp_path: Path
) -> None:
    spec = _spec(fake_launcher)
    results: list[VLLMServer] = []

    def worker() -> None:
        results.append(vllm_server.get_or_start(spec, log_dir=tmp_path))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert len(results) == 4
        assert len({id(s) for s in results}) == 1
        first = results[0]
        other = vllm_server.get_or_start(
            ServerSpec(
                model="fake-model", served_model_name="other", extra_args=(), launcher=spec.launcher
            ),
            log_dir=tmp_path,
        )
        assert other is not first and other.port != first.port
        pids = [p for s in (first, other) for p in (s.server_pid, s.guard_pid) if p is not None]
    finally:
        vllm_server.stop_all()
    assert not first.is_running() and not other.is_running()
    assert _wait_gone(pids, 2) == []


def test_stop_all_aborts_a_server_that_is_still_starting(
    fake_launcher: tuple[str, ...], tmp_path: Path
) -> None:
    """A Ctrl-C while a model loads: stop_all must not wait for the load to finish."""
    spec = _spec(fake_launcher, "--slow", "60", timeout=90)
    errors: list[BaseException] = []

    def starter() -> None:
        try:
            vllm_server.get_or_start(spec, log_dir=tmp_path)
        except VLLMServerError as exc:
            errors.append(exc)

    thread = threading.Thread(target=starter)
    thread.start()
    deadline = time.monotonic() + 30
    while not vllm_server.find_leftover_servers(owner_pid=os.getpid()):
        assert time.monotonic() < deadline, "the fake server never started"
        time.sleep(0.1)
    t0 = time.monotonic()
    vllm_server.stop_all()
    thread.join(30)
    assert not thread.is_alive() and time.monotonic() - t0 < 20
    assert len(errors) == 1 and "aborted" in str(errors[0])
    assert vllm_server.running_keys() == frozenset()
    assert _wait_gone(vllm_server.find_leftover_servers(owner_pid=os.getpid()), 5) == []


def test_guard_requires_command() -> None:
    assert vllm_server._guard_main(["--guard-parent", "1"]) == 2


def test_start_reports_log_path_once_then_ready(
    fake_launcher: tuple[str, ...], tmp_path: Path
) -> None:
    """A newcomer sees the server start at once, where its log is, and when it is ready;
    the settings chosen for the machine reach the server's environment."""
    spec = ServerSpec(model="fake-model", served_model_name="fake", extra_args=(),
                      env=(("VLLM_CPU_OMP_THREADS_BIND", "0-1"),), launcher=fake_launcher,
                      label="float32 on CPUs 0-1")
    events: list[str] = []
    with VLLMServer(spec, log_dir=tmp_path, on_event=events.append) as server:
        env = psutil.Process(server.server_pid).environ()
        assert env["VLLM_CPU_OMP_THREADS_BIND"] == "0-1"
        log = str(server.log_path)
    assert events[0] == f"starting the vLLM server for fake, float32 on CPUs 0-1 (log: {log})"
    assert events[1].startswith("server ready after ") and log not in events[1]
    assert len(events) == 2
    assert spec.key == ServerSpec(model="fake-model", served_model_name="fake", extra_args=(),
                                  env=spec.env, launcher=fake_launcher).key  # label: no key


def test_shared_server_prints_progress_lines(
    fake_launcher: tuple[str, ...], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str]
) -> None:
    from pipelines.generators.backends import SharedServer
    from pipelines.outputs.progress import PROGRESS

    monkeypatch.setattr(PROGRESS, "_enabled", True)
    try:
        url = SharedServer(_spec(fake_launcher)).base_url()
    finally:
        vllm_server.stop_all()
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("instructbeam: starting the vLLM server for fake (log: ")
    assert err[1].startswith("instructbeam: server ready after ") and url in err[1]
