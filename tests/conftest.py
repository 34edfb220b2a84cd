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
