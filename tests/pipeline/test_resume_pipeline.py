"""A long run's resume, as a user meets it: Self-Instruct through the CLI against a generator
that goes down for a while, then the same command once it is back (no call, the same bytes),
then `--retry-failed` (the dead letters are asked again, the paid calls are reported, and the
output is the one a run without an outage writes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import ROOT
from fakes import is_instruction_prompt
from helpers import read_rows, shard_digests


def _config(tmp_path: Path, base_url: str, out: Path, cache: Path) -> Path:
    path = tmp_path / f"{out.name}.yaml"
    path.write_text("\n".join([
        "recipe: self_instruct", f"output_dir: {out}", "num_shards: 2",
        "max_failure_ratio: 1.0",
        "generator:", "  backend: openai", f"  base_url: {base_url}", "  model: scripted",
        "  revision: scripted-v1", "  max_concurrency: 4", "  timeout_s: 10",
        "  max_attempts: 2", "  backoff_s: 0.01", "  max_backoff_s: 0.02",
        "self_instruct:", "  num_instructions: 60", "  max_prompts: 30",
        "  refresh_window: 4",
        f"cache:\n  dir: {cache}"]) + "\n")
    return path


def _cli(config: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, INSTRUCTBEAM_PROGRESS="1")
    return subprocess.run([sys.executable, "-m", "pipelines.cli", "run", str(config), *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def _usage(out: Path, name: str) -> int:
    manifest = json.loads((out / "manifest.json").read_text())
    return sum(u.get(name, 0) for u in manifest["run"]["generator_usage"].values())


def test_an_outage_then_the_same_command_then_retry_failed(scripted_server, tmp_path):
    reference = scripted_server()
    ref_out = tmp_path / "reference"
    ref = _cli(_config(tmp_path, reference.base_url, ref_out, tmp_path / "ref-cache"))
    assert ref.returncode == 0, ref.stderr[-3000:]

    # instruction prompts (18 attempts, two per prompt) meet a server that is down
    down = scripted_server(outage=range(12, 30), outage_of=is_instruction_prompt)
    out, cache = tmp_path / "out", tmp_path / "cache"
    config = _config(tmp_path, down.base_url, out, cache)
    first = _cli(config)
    assert first.returncode == 0, first.stderr[-3000:]
    dead = read_rows(out, "failed")
    assert len(dead) >= 5 and {d["stage"] for d in dead} == {"instruction_gen"}, dead
    outage_bytes = shard_digests(out)
    assert outage_bytes != shard_digests(ref_out)

    # the same command once the server is back: every decision replayed, nothing asked
    healthy = scripted_server()
    config.write_text(config.read_text().replace(down.base_url, healthy.base_url))
    again = _cli(config)
    assert again.returncode == 0, again.stderr[-3000:]
    assert healthy.stats.requests == 0, f"{healthy.stats.requests} requests were sent"
    assert shard_digests(out) == outage_bytes
    assert _usage(out, "failures_replayed") == len(dead)
    assert "stay failed" in again.stderr and "--retry-failed" in again.stderr
    assert f"{len(dead)} failures replayed" in again.stdout

    # --retry-failed: the dead letters are asked again, and what they change downstream
    retried = _cli(config, "--retry-failed")
    assert retried.returncode == 0, retried.stderr[-3000:]
    assert "retrying their" in retried.stderr
    assert read_rows(out, "failed") == []
    paid = _usage(out, "calls")
    assert paid == healthy.stats.answered > 0
    assert f"paid: {paid} calls answered" in retried.stdout
    assert shard_digests(out) == shard_digests(ref_out)

    # and a rerun of that finished run asks nothing
    before = healthy.stats.requests
    last = _cli(config)
    assert last.returncode == 0, last.stderr[-3000:]
    assert healthy.stats.requests == before
    assert shard_digests(out) == shard_digests(ref_out)
    print(f"\noutage: {len(dead)} dead letters; same command: 0 calls, same bytes; "
          f"--retry-failed: {paid} calls, bytes of a run without the outage")
