"""A `vllm` generator served from a local folder: new weights must never get old answers.

The run points every call at the scripted server (the `endpoint` override), so the real
pipeline, cache and manifest run while the identity comes from the folder on disk. A rerun
with the folder unchanged is answered from the cache; touching one weight file makes every
request a miss, and the rows and the manifest name the new revision.
"""

from __future__ import annotations

import os
from dataclasses import replace

from helpers import read_rows, scripted_config

from pipelines.generators.revision import CONTENT_HASH_MAX_BYTES
from pipelines.run import run
from pipelines.settings import GeneratorConfig


def _usage(manifest: dict, name: str) -> int:
    return sum(u.get(name, 0) for u in manifest["run"]["generator_usage"].values())


def test_changed_local_weights_make_every_request_a_cache_miss(scripted_server, tmp_path):
    model = tmp_path / "my-model"
    model.mkdir()
    (model / "config.json").write_text('{"architectures": ["LlamaForCausalLM"]}')
    weights = model / "model.safetensors"
    weights.write_bytes(b"\1" * (CONTENT_HASH_MAX_BYTES + 1))  # large: counted by size+mtime

    server = scripted_server()
    base = scripted_config(server.base_url, tmp_path / "out", tmp_path / "cache",
                           num_instructions=8, max_prompts=4)
    cfg = replace(base, generator=GeneratorConfig(
        backend="vllm", model=str(model), max_concurrency=4, timeout_s=2.0))

    first = run(cfg, endpoint=server.base_url).manifest
    revision = first["generator"]["revision"]
    assert revision.startswith("dir-sha256:")
    assert _usage(first, "cache_hits") == 0 and _usage(first, "calls") > 0
    assert {r["generator_revision"] for r in read_rows(tmp_path / "out", "data")} == {revision}

    same = run(cfg, endpoint=server.base_url).manifest
    assert same["generator"]["revision"] == revision
    assert _usage(same, "cache_misses") == 0
    assert _usage(same, "cache_hits") == _usage(same, "requests") > 0

    stat = weights.stat()
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    answered_before = server.stats.answered
    changed = run(cfg, endpoint=server.base_url).manifest
    assert changed["generator"]["revision"] != revision
    assert _usage(changed, "cache_hits") == 0
    assert _usage(changed, "cache_misses") == _usage(changed, "requests") > 0
    assert server.stats.answered - answered_before == _usage(changed, "calls")
    rows = read_rows(tmp_path / "out", "data")
    assert rows and {r["generator_revision"] for r in rows} == {changed["generator"]["revision"]}
