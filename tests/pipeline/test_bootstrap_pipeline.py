"""The streaming bootstrap through the real pipeline (FnApiRunner, HTTP client, cache, Parquet):
output independent of concurrency, lanes (also on two worker processes), and a kill -9 in the
middle of the loop that the same command resumes from the cache, byte for byte."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

from conftest import ROOT
from helpers import read_rows, scripted_config, shard_digests

from pipelines.run import run

MULTI = ["--direct_num_workers=2", "--direct_running_mode=multi_processing"]


def _digests(out: Path, kinds: tuple[str, ...] = ("data", "instructions")) -> dict[str, str]:
    return {k: v for k, v in shard_digests(out).items() if k.split("/")[0] in kinds}


def test_output_does_not_depend_on_concurrency(scripted_server, tmp_path):
    """Answers arrive in a different order at concurrency 1 and 8 (every answer takes a
    while, so eight overlap); prompts are built and decided in the same order all the same."""
    server = scripted_server(answer_delay_s=0.02)
    cfg = scripted_config(server.base_url, tmp_path / "one", None, num_instructions=24,
                          max_prompts=40)
    run(replace(cfg, generator=replace(cfg.generator, max_concurrency=1)))
    run(replace(cfg, output_dir=str(tmp_path / "eight"),
                generator=replace(cfg.generator, max_concurrency=8)))
    assert shard_digests(tmp_path / "one") == shard_digests(tmp_path / "eight")


def test_two_lanes_draw_their_own_prompts_and_one_pass_keeps_the_union_novel(
        scripted_server, tmp_path):
    server = scripted_server()
    single, multi = tmp_path / "single", tmp_path / "multi"
    cfg = scripted_config(server.base_url, single, None, num_instructions=30, max_prompts=16,
                          lanes=2)
    manifest = run(cfg).manifest
    assert all(c["holds"] for c in manifest["accounting"]), manifest["accounting"]
    instructions = read_rows(single, "instructions")
    assert {row["lane"] for row in instructions} == {0, 1}
    stages = manifest["stages"]
    # every lane-accepted instruction went through the cross-lane pass
    assert stages["lane_novelty"]["produced"] == stages["novelty"]["kept"]
    assert stages["clf_identify"]["in"] == stages["lane_novelty"]["kept"] == len(instructions)
    target = manifest["targets"]["self_instruct.num_instructions"]
    assert target["got"] == len(instructions)
    # the lanes asked different questions: no prompt (request id or text) is shared
    by_lane: dict[int, set[str]] = {0: set(), 1: set()}
    for row in instructions:
        by_lane[row["lane"]].add(row["request_id"])
    assert by_lane[0] and by_lane[1] and not by_lane[0] & by_lane[1]
    prompts = [p for kind, _, p in server.timeline if kind == "arrive"
               and p.rstrip().endswith("9.")]
    assert len(prompts) == len(set(prompts)) >= stages["instruction_gen"]["in"]
    # two worker processes place the lanes anywhere; the shards stay byte-identical
    run(replace(cfg, output_dir=str(multi)), MULTI)
    assert shard_digests(multi) == shard_digests(single)


def test_instances_of_an_instruction_another_lane_repeats_are_rejected_with_it(
        scripted_server, tmp_path):
    """Lanes make instances as they accept instructions; the cross-lane pass comes after.
    A low novelty threshold makes the lanes repeat each other: those instructions' instance
    rows are rejected as `task_failed_upstream`, none reaches `data/`, nothing is lost."""
    server = scripted_server()
    out = tmp_path / "out"
    cfg = scripted_config(server.base_url, out, None, num_instructions=40, max_prompts=30,
                          lanes=2, rouge_threshold=0.5)
    manifest = run(cfg).manifest
    assert all(c["holds"] for c in manifest["accounting"]), manifest["accounting"]
    stages = manifest["stages"]
    assert stages["clf_identify"]["in"] == stages["novelty"]["kept"]  # classified in the lane
    rejected = read_rows(out, "rejected")
    repeats = {r["instruction"] for r in rejected if r["filter_stage"] == "lane_novelty"}
    orphans = [r for r in rejected if r["reason"] == "task_failed_upstream"]
    assert repeats and orphans, stages["lane_novelty"]
    assert {r["instruction"] for r in orphans} <= repeats
    assert all(r["filter_stage"] == "instance_gen" for r in orphans)
    assert not repeats & {r["instruction"] for r in read_rows(out, "data")}
    assert not repeats & {r["instruction"] for r in read_rows(out, "instructions")}


def _config(tmp_path: Path, base_url: str, out: Path, cache: Path) -> Path:
    path = tmp_path / f"{out.name}.yaml"
    path.write_text("\n".join([
        "recipe: self_instruct", f"output_dir: {out}", "num_shards: 2",
        "generator:", "  backend: openai", f"  base_url: {base_url}", "  model: scripted",
        "  revision: scripted-v1", "  max_concurrency: 4", "  timeout_s: 10",
        "self_instruct:", "  num_instructions: 40", "  max_prompts: 24",
        f"cache:\n  dir: {cache}"]) + "\n")
    return path


def _cli(config: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipelines.cli", "run", str(config)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_kill_9_mid_loop_then_the_same_command_resumes_byte_identical(
        scripted_server, tmp_path):
    env = dict(os.environ, INSTRUCTBEAM_PROGRESS="0")
    # the reference: one uninterrupted run
    reference = scripted_server()
    ref_out = tmp_path / "reference"
    ref = _cli(_config(tmp_path, reference.base_url, ref_out, tmp_path / "ref_cache"), env)
    assert ref.returncode == 0, ref.stderr[-3000:]

    # the same config, killed with SIGKILL while the loop is running
    slow = scripted_server(answer_delay_s=0.2)
    slow_url = slow.base_url
    out, cache = tmp_path / "out", tmp_path / "cache"
    config = _config(tmp_path, slow_url, out, cache)
    proc = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "run", str(config)],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 180
    while len(list(cache.rglob("*.json"))) < 6:
        assert proc.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline, "no answer was cached within 180 s"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    slow.stop()
    cached_keys = {p.stem for p in cache.rglob("*.json")}
    assert not (out / "manifest.json").exists()

    fast = scripted_server()
    config.write_text(config.read_text().replace(slow_url, fast.base_url))
    rerun = _cli(config, env)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert _digests(out) == _digests(ref_out)
    assert _digests(out)  # data and instructions were written
    manifest = json.loads((out / "manifest.json").read_text())
    usage = manifest["run"]["generator_usage"]
    hits = sum(u.get("cache_hits", 0) for u in usage.values())
    calls = sum(u.get("calls", 0) for u in usage.values())
    # no completed call was paid twice: every answer cached before the kill was a hit, and
    # the server only saw requests whose answers were not in the cache
    assert hits >= len(cached_keys) and fast.stats.answered == calls
    assert len({p.stem for p in cache.rglob("*.json")}) == len(cached_keys) + calls
