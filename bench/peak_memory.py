"""Run a command and report the peak memory of its whole process tree (servers included).

`/usr/bin/time -v` reports the largest single process; a run here is the pipeline plus the
vLLM servers it starts (guard, API server, engine core per model), so we sample the tree:
every `--interval` seconds the sum of RSS and of PSS (shared pages split between the
processes that map them, so shared libraries are not counted once per process).

    .venv/bin/python bench/peak_memory.py -- .venv/bin/instructbeam run configs/X.yaml
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

import psutil

GIB = 1024**3


def _tree(root: psutil.Process) -> list[psutil.Process]:
    try:
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _sample(procs: list[psutil.Process]) -> tuple[int, int, list[tuple[str, int]]]:
    rss = pss = 0
    rows = []
    for proc in procs:
        try:
            info = proc.memory_full_info()
            name = " ".join(proc.cmdline()[:3])[:80] or proc.name()
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        rss += info.rss
        pss += getattr(info, "pss", info.rss)
        rows.append((name, info.rss))
    return rss, pss, rows


def measure(command: list[str], interval: float = 0.5
            ) -> tuple[int, float, int, int, list[tuple[str, int]]]:
    """Run `command`; return (exit code, wall seconds, peak RSS, peak PSS, the processes at
    the RSS peak) of its whole process tree (other benches reuse this)."""
    started = time.time()
    child = subprocess.Popen(command)
    root = psutil.Process(child.pid)
    peak_rss = peak_pss = 0
    peak_rows: list[tuple[str, int]] = []
    while child.poll() is None:
        rss, pss, rows = _sample(_tree(root))
        peak_pss = max(peak_pss, pss)
        if rss > peak_rss:
            peak_rss, peak_rows = rss, rows
        time.sleep(interval)
    return child.returncode, time.time() - started, peak_rss, peak_pss, peak_rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--interval", type=float, default=0.5)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    code, wall, peak_rss, peak_pss, peak_rows = measure(command, args.interval)
    print(f"\npeak memory of the process tree: RSS {peak_rss / GIB:.2f} GiB, "
          f"PSS {peak_pss / GIB:.2f} GiB; wall {wall:.0f} s; "
          f"exit {code}", file=sys.stderr)
    for name, rss in sorted(peak_rows, key=lambda r: -r[1])[:8]:
        print(f"  {rss / GIB:6.2f} GiB  {name}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
