"""A demo end to end, prefix warm-up off vs on: the README's demo timings.

Runs `instructbeam run <config>` with an empty response cache of its own (default:
configs/self_instruct_demo.yaml; the Explore-Instruct figure comes from `--config
configs/explore_instruct_demo.yaml`): a newcomer's first run, every answer comes from the
embedded vLLM server (each run starts its own), and what a run asks twice (Explore's early
extend attempts) is answered from that cache. Once per mode, alternating modes for
`--rounds` rounds, and reports per run: wall time, the server's start time (its "server
ready after N s" progress line), completion tokens per second of wall time, and the
prefix-cache hit rate per stage (`run.generator_usage` in the manifest: prompt tokens vLLM
found cached / looked up). Prints the machine (cores, bf16/AMX flags) and the load average
before and after, since figures from a shared machine are only comparable side by side.

    .venv/bin/python bench/demo_bench.py [--config C] [--rounds 1] [--modes off,on]
                                         [--out /tmp/demo_bench]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "self_instruct_demo.yaml"
READY = re.compile(r"server ready after (\d+) s")
FLAGS = ("avx2", "avx512_bf16", "amx_bf16")


def machine() -> str:
    flags = set()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
    present = [f for f in FLAGS if f in flags]
    return f"{os.cpu_count()} CPUs; {', '.join(present) or 'none of ' + ', '.join(FLAGS)}"


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def run_once(config: Path, warmup: bool, out: Path, sets: list[str]) -> dict:
    label = "_".join(["warmup_on" if warmup else "warmup_off",
                      *(re.sub(r"[^A-Za-z0-9]+", "-", s) for s in sets)])
    target = out / config.stem / label
    cli = Path(sys.executable).with_name("instructbeam")
    cache = target.with_name(target.name + ".cache")
    shutil.rmtree(cache, ignore_errors=True)
    cmd = [str(cli), "run", str(config), "--output-dir", str(target), "--overwrite",
           "--set", f"cache.dir={cache}",
           "--set", f"generator.prefix_warmup={str(warmup).lower()}",
           *(arg for s in sets for arg in ("--set", s))]
    load_before = load()
    start = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # this checkout's code, not the installed one
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"run failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    manifest = json.loads((target / "manifest.json").read_text())
    usage = manifest["run"]["generator_usage"]
    ready = READY.search(proc.stderr + proc.stdout)
    tokens = sum(u.get("completion_tokens", 0) for u in usage.values())
    return {
        "config": config.name, "prefix_warmup": warmup, "set": sets, "wall_s": round(wall, 1),
        "server_start_s": int(ready.group(1)) if ready else None,
        "completion_tokens": tokens, "tok_per_s": round(tokens / wall, 1),
        "hit_rate": {stage: round(u.get("prefix_cache_hits", 0) / u["prefix_cache_queries"], 3)
                     for stage, u in usage.items() if u.get("prefix_cache_queries")},
        "warmup_waits": {stage: u.get("warmup_waits", 0) for stage, u in usage.items()},
        "load_before": load_before, "load_after": load(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=CONFIG)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("/tmp/demo_bench"))
    parser.add_argument("--modes", default="off,on",
                        help="prefix warm-up modes to run, in order (default off,on)")
    parser.add_argument("--set", action="append", default=[], dest="sets", metavar="KEY=VALUE",
                        help="a config override for every run (repeatable)")
    args = parser.parse_args()
    print(f"machine: {machine()}; load average {load()} (a shared machine: other jobs run)")
    results = []
    for _ in range(args.rounds):
        for warmup in (mode == "on" for mode in args.modes.split(",")):
            result = run_once(args.config.resolve(), warmup, args.out, args.sets)
            results.append(result)
            print(json.dumps(result), flush=True)
    print(f"\n{args.config.name} {' '.join(args.sets)}\n")
    print("| prefix warm-up | wall s | server start s | completion tok | tok/s | "
          "prefix-cache hit rate per stage | load before/after |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        rates = ", ".join(f"{s} {v:.0%}" for s, v in r["hit_rate"].items())
        print(f"| {'on' if r['prefix_warmup'] else 'off'} | {r['wall_s']} | "
              f"{r['server_start_s']} | {r['completion_tokens']} | {r['tok_per_s']} | {rates} | "
              f"{r['load_before']} / {r['load_after']} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
