"""Fault injection: an unreliable generator, a killed run, and a rerun that pays only once.

The scripted server injects 500/429 answers, delays past the client timeout, dropped
connections and garbled bodies (bounded in count); the real pipeline must finish with its
accounting intact, every fault visible as a retry or a failed record, and a healthy rerun
with the cache must repeat no completed call and end with the same shards as a run that never
saw a fault. A rerun replays the failures it decided (same bytes, no call); `retry_failed`
asks them again.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import replace

import pytest
from conftest import ROOT
from fakes import FaultPlan
from helpers import read_rows, scripted_config, shard_digests

from pipelines.errors import RunFailed
from pipelines.outputs.report import format_summary
from pipelines.recipes.registry import recipe_info
from pipelines.run import run

FAULTS = FaultPlan(p_500=0.08, p_429=0.08, p_delay=0.04, p_drop=0.06, p_garbled=0.06,
                   delay_s=2.5, max_faults=60, seed=11)


def _usage_total(manifest: dict, name: str) -> int:
    return sum(u.get(name, 0) for u in manifest["run"]["generator_usage"].values())


@pytest.fixture
def healthy_reference(scripted_server, tmp_path):
    server = scripted_server()
    out = tmp_path / "reference"
    run(scripted_config(server.base_url, out, tmp_path / "ref-cache"))
    return shard_digests(out)


def test_faults_are_retried_or_recorded_a_rerun_replays_them_and_retry_asks_again(
        scripted_server, tmp_path, healthy_reference):
    flaky = scripted_server(faults=FAULTS)
    cache = tmp_path / "cache"
    out = tmp_path / "out"
    cfg = replace(scripted_config(flaky.base_url, out, cache), max_failure_ratio=1.0)
    # A delay here stands for a hung server: a fixed timeout, whatever the measured speed.
    cfg = replace(cfg, generator=replace(cfg.generator, timeout_s=1.0, max_attempts=2,
                                         adaptive_timeout=False))
    manifest = run(cfg).manifest

    injected = flaky.stats.total_faults
    assert injected > 10, flaky.stats.faults
    assert all(c["holds"] for c in manifest["accounting"]), manifest["accounting"]
    retries, failed = _usage_total(manifest, "retries"), _usage_total(manifest, "failed")
    assert retries + failed == injected, (retries, failed, dict(flaky.stats.faults))
    failures = read_rows(out, "failed")
    assert len(failures) == failed > 0
    assert {f["error_class"] for f in failures} <= {
        "http_500", "http_429", "timeout", "connection_error", "invalid_body"}
    assert all(f["attempts"] == 2 for f in failures)

    first = shard_digests(out)

    # The same command on a healthy server replays every decision, failures included: no
    # call, the same bytes.
    healthy = scripted_server()
    answered_before = set(flaky.stats.answered_keys)
    healthy_cfg = replace(cfg, generator=replace(cfg.generator, base_url=healthy.base_url))
    replayed = run(healthy_cfg)
    assert healthy.stats.requests == 0
    assert _usage_total(replayed.manifest, "failures_replayed") == failed
    assert shard_digests(out) == first

    # --retry-failed asks the failures again: no completed call is paid twice, and the
    # output is the one a run that never saw a fault writes.
    rerun = run(replace(healthy_cfg, cache=replace(cfg.cache, retry_failed=True)))
    repeated = answered_before & set(healthy.stats.answered_keys)
    assert not repeated, f"{len(repeated)} completed calls were paid for twice"
    assert _usage_total(rerun.manifest, "failed") == 0
    assert _usage_total(rerun.manifest, "cache_hits") >= len(answered_before) - failed
    assert shard_digests(out) == healthy_reference
    print(f"\nfaults: {flaky.stats.requests} requests, {injected} faults injected "
          f"{dict(flaky.stats.faults)}, {retries} retries, {failed} failed, 0 lost; rerun: "
          f"0 calls, {failed} failures replayed; --retry-failed: {healthy.stats.answered} "
          f"calls, {_usage_total(rerun.manifest, 'cache_hits')} answered from the cache")


def test_a_slow_server_keeps_its_finished_work(scripted_server, tmp_path):
    """Every answer takes 1.5 s, longer than the 1 s timeout (a slow machine). A fixed
    timeout abandons every attempt and the run fails; here a retry waits twice as long and
    the measured speed sizes every later wait, so nothing fails, most calls never time out,
    and the summary shows retries and timeouts per stage."""
    slow = scripted_server(faults=FaultPlan(p_delay=1.0, delay_s=1.5, max_faults=10_000))
    out = tmp_path / "out"
    cfg = scripted_config(slow.base_url, out, None, num_instructions=12, max_prompts=8)
    cfg = replace(cfg, generator=replace(cfg.generator, timeout_s=1.0, max_attempts=2))
    manifest = run(cfg).manifest
    usage = manifest["run"]["generator_usage"]
    calls, timeouts = _usage_total(manifest, "calls"), _usage_total(manifest, "timeouts")
    assert _usage_total(manifest, "failed") == 0, usage
    assert 0 < timeouts <= calls // 2, usage
    assert _usage_total(manifest, "retries") == timeouts
    assert manifest["run"]["generator"]["timeout"] == {"floor_s": 1.0, "adaptive": True}
    assert manifest["run"]["generator"]["prefix_warmup"] is False  # openai: off by default
    calls_table = format_summary(manifest, out, recipe_info()).split("generator calls", 1)[1]
    for stage, u in usage.items():
        row = calls_table.split(f"    {stage} ", 1)[1].splitlines()[0]
        assert f"; {u.get('retries', 0)} retries, {u.get('timeouts', 0)} timeouts;" in row


def test_failure_ratio_above_the_limit_fails_after_writing(scripted_server, tmp_path):
    flaky = scripted_server(faults=FaultPlan(p_500=1.0, max_faults=10_000))
    out = tmp_path / "out"
    cfg = scripted_config(flaky.base_url, out, None, max_prompts=4)
    with pytest.raises(RunFailed, match="failure ratio 1.000 > max_failure_ratio 0.05"):
        run(cfg)
    assert (out / "manifest.json").exists()
    assert len(read_rows(out, "failed")) == 4


def _cli_config(tmp_path, base_url: str, out, cache) -> str:
    path = tmp_path / "crash.yaml"
    path.write_text("\n".join([
        "recipe: self_instruct", f"output_dir: {out}", "num_shards: 2",
        "generator:", "  backend: openai", f"  base_url: {base_url}", "  model: scripted",
        "  max_concurrency: 2", "  timeout_s: 5",
        "self_instruct:", "  num_instructions: 30", "  prompts_per_round: 4",
        "  max_prompts: 12", f"cache:\n  dir: {cache}"]) + "\n")
    return str(path)


def test_killed_runs_resume_to_the_same_output(scripted_server, tmp_path, healthy_reference):
    cache, out = tmp_path / "cache", tmp_path / "out"
    answered: list = []
    for kill_after in (3, 9):  # two crash points: mid round 1, then later in the run
        server = scripted_server(hold_after=kill_after)
        config = _cli_config(tmp_path, server.base_url, out, cache)
        proc = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "run", config],
                                cwd=ROOT, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        assert server.holding.wait(120), "the run never reached the crash point"
        time.sleep(1.0)  # let answered calls land in the cache
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
        answered += server.stats.answered_keys
        server.stop()
        assert not out.exists(), "a killed run must not leave a (partial) output directory"

    server = scripted_server()
    config = _cli_config(tmp_path, server.base_url, out, cache)
    done = subprocess.run([sys.executable, "-m", "pipelines.cli", "run", config], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(answered) == len(set(answered)), "the second attempt repeated a completed call"
    assert not set(answered) & set(server.stats.answered_keys), "the final run repeated calls"
    assert shard_digests(out) == healthy_reference
    assert not list(tmp_path.glob("out.staging-*")), "stale staging directories left behind"
