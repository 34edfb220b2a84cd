"""Before/after check for a code move: every demo answers from an older cache, same shards.

A restructuring must not change record ids, cache keys or what a run writes. This script runs
every config in `configs/` against the project's scripted fake servers (tests/*fakes.py,
backend `openai`, cache on) and records, per config, how many requests reached a server and
a digest of every shard under data/, instructions/, rejected/, failed/ and nodes/.

    # on the old commit (a second worktree), then on the new code:
    PYTHONPATH=/tmp/before python bench/cache_compat.py run /tmp/compat/before
    PYTHONPATH=.           python bench/cache_compat.py run /tmp/compat/after \
        --cache-from /tmp/compat/before
    python bench/cache_compat.py compare /tmp/compat/before /tmp/compat/after

`--cache-from` copies the earlier run's cache first; `compare` then passes only when the
second run made 0 requests for every config and wrote byte-identical shards.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from ensemble_fakes import EnsembleScriptedServer  # noqa: E402
from explore_fakes import ExploreServer  # noqa: E402
from fakes import ScriptedServer  # noqa: E402
from instag_fakes import ScriptedTagger  # noqa: E402

SHARD_DIRS = ("data", "instructions", "rejected", "failed", "nodes")
REVISION = "cache-compat-1"  # a fixed model version: part of every cache key


def _server(recipe: str) -> ScriptedServer:
    if recipe == "ensemble_instruct":
        return EnsembleScriptedServer("twin")
    if recipe == "explore_instruct":
        return ExploreServer()
    if recipe == "instag":
        return ScriptedTagger()
    return ScriptedServer()


def _openai(generator: dict, base_url: str) -> dict:
    """The same model name (it is in the cache key), served by the fake endpoint."""
    return {**{k: v for k, v in generator.items() if k not in ("server_args", "dtype",
                                                                "cpu_threads")},
            "backend": "openai", "base_url": base_url, "revision": REVISION,
            "timeout_s": 120.0, "max_attempts": 6, "backoff_s": 0.05,
            "max_backoff_s": 0.5}  # no failed request: those are retried, not cached


def _prepare(config: Path, base_url: str, out: Path, cache: Path) -> Path:
    data = yaml.safe_load(config.read_text(encoding="utf-8"))
    data["output_dir"] = str(out)
    data["cache"] = {"enabled": True, "dir": str(cache)}
    if "generator" in data or data["recipe"] != "filter":
        data["generator"] = _openai(data.get("generator") or {}, base_url)
    for extra in (data.get("ensemble_instruct") or {}).get("extra_generators") or ():
        extra["generator"] = _openai(extra.get("generator") or {}, base_url)
    prepared = config.parent / f".compat-{config.name}"  # beside it: relative paths resolve
    prepared.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return prepared


def _digests(out: Path) -> dict[str, str]:
    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
            for d in SHARD_DIRS for p in sorted((out / d).rglob("*")) if p.is_file()}


def run_all(dest: Path, cache_from: Path | None) -> dict:
    from pipelines.config import load_config
    from pipelines.run import run

    dest.mkdir(parents=True, exist_ok=True)
    cache = dest / "cache"
    if cache_from is not None:
        shutil.rmtree(cache, ignore_errors=True)
        shutil.copytree(cache_from / "cache", cache)
    summary = {}
    for config in sorted((ROOT / "configs").glob("[!.]*.yaml")):  # not our temporary copies
        recipe = yaml.safe_load(config.read_text(encoding="utf-8"))["recipe"]
        server = _server(recipe)
        server.start()
        out = dest / "out" / config.stem
        prepared = _prepare(config, server.base_url, out, cache)
        try:
            result = run(load_config(prepared), overwrite=True, config_path=prepared)
            status = "ok"
        except Exception as exc:  # noqa: BLE001 - a failed run is a result to compare too
            result, status = None, f"{type(exc).__name__}: {exc}"
        finally:
            prepared.unlink()
            server.stop()
        summary[config.stem] = {"requests": server.stats.requests, "status": status,
                                "rows": (result.manifest.get("rows") if result else None),
                                "shards": _digests(out) if out.exists() else {}}
        print(f"{config.stem}: {status}, {server.stats.requests} requests, "
              f"{len(summary[config.stem]['shards'])} shard files", flush=True)
    (dest / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True))
    return summary


def compare(before: Path, after: Path) -> bool:
    old = json.loads((before / "summary.json").read_text())
    new = json.loads((after / "summary.json").read_text())
    old = {k: v for k, v in old.items() if not k.startswith(".")}
    new = {k: v for k, v in new.items() if not k.startswith(".")}
    ok = set(old) == set(new)
    for name in sorted(old):
        o, n = old[name], new.get(name, {})
        same = o["shards"] == n.get("shards") and bool(o["shards"])
        line = (f"{name}: before {o['requests']} requests ({o['status']}), after "
                f"{n.get('requests')} requests ({n.get('status')}); "
                f"{len(o['shards'])} shard files, {'byte-identical' if same else 'DIFFERENT'}")
        print(line)
        ok = ok and same and n.get("requests") == 0 and o["status"] == n.get("status")
    print("PASS" if ok else "FAIL")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run")
    r.add_argument("dest", type=Path)
    r.add_argument("--cache-from", type=Path)
    c = sub.add_parser("compare")
    c.add_argument("before", type=Path)
    c.add_argument("after", type=Path)
    args = parser.parse_args()
    if args.command == "run":
        run_all(args.dest, args.cache_from)
        return 0
    return 0 if compare(args.before, args.after) else 1


if __name__ == "__main__":
    sys.exit(main())
