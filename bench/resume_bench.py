"""What a resume after an outage pays: Self-Instruct at scale against the scripted generator
(tests/fakes.py), with the generator down for a stretch of instruction prompts early in the
run, then the same command on a healthy generator.

Three runs share one cache: (1) the run with the outage; (2) the same command once the
generator is back (replays every decision, failures included); (3) `retry_failed` (asks the
failures again: what every resume paid before the lane journal, since failures were not
kept). Printed: dead letters, calls each run paid, the retry estimate said beforehand, and
whether (2) wrote the same bytes as (1) and (3) the bytes of a run that never saw the outage.

    .venv/bin/python bench/resume_bench.py [--instructions 2000] [--window 128]
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from fakes import ScriptedServer, is_instruction_prompt  # noqa: E402

from pipelines.config import RunConfig  # noqa: E402
from pipelines.recipes.self_instruct.config import SelfInstructConfig  # noqa: E402
from pipelines.run import run  # noqa: E402
from pipelines.settings import CacheConfig, GeneratorConfig  # noqa: E402


def _config(url: str, out: Path, cache: Path, n: int, window: int, retry: bool = False
            ) -> RunConfig:
    return RunConfig(
        recipe="self_instruct", output_dir=str(out), num_shards=2, max_failure_ratio=1.0,
        generator=GeneratorConfig(backend="openai", base_url=url, model="scripted",
                                  revision="scripted-v1", max_concurrency=16, timeout_s=10,
                                  max_attempts=2, backoff_s=0.01, max_backoff_s=0.02),
        self_instruct=SelfInstructConfig(num_instructions=n, refresh_window=window),
        cache=CacheConfig(dir=str(cache), retry_failed=retry))


def _digests(out: Path) -> dict[str, str]:
    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(out.rglob("*.parquet"))}


def _served(url_server: ScriptedServer) -> int:
    return url_server.stats.answered


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--instructions", type=int, default=2000)
    parser.add_argument("--window", type=int, default=128)
    parser.add_argument("--outage", default="40:80",
                        help="instruction-prompt attempts (start:stop) answered 503")
    args = parser.parse_args()
    start, stop = (int(x) for x in args.outage.split(":"))
    with tempfile.TemporaryDirectory(prefix="resume-bench-") as tmp:
        root = Path(tmp)
        ref = ScriptedServer()
        ref.start()
        t = time.monotonic()
        run(_config(ref.base_url, root / "ref", root / "ref-cache", args.instructions,
                    args.window))
        print(f"reference run: {_served(ref)} calls, {time.monotonic() - t:.0f} s")

        down = ScriptedServer(outage=range(start, stop), outage_of=is_instruction_prompt)
        down.start()
        out, cache = root / "out", root / "cache"
        first = run(_config(down.base_url, out, cache, args.instructions, args.window))
        dead = first.manifest["rows"].get("failed", 0)
        outage_bytes = _digests(out)
        print(f"(1) outage: {_served(down)} calls answered, {dead} dead letters")

        healthy = ScriptedServer()
        healthy.start()
        run(_config(healthy.base_url, out, cache, args.instructions, args.window))
        print(f"(2) same command, generator back: {healthy.stats.requests} requests, "
              f"same bytes as (1): {_digests(out) == outage_bytes}")

        before = healthy.stats.answered
        run(_config(healthy.base_url, out, cache, args.instructions, args.window, retry=True))
        paid = healthy.stats.answered - before
        print(f"(3) retry_failed (what every resume paid before): {paid} calls "
              f"({paid / max(_served(ref), 1):.0%} of the whole run), bytes of the "
              f"reference: {_digests(out) == _digests(root / 'ref')}")


if __name__ == "__main__":
    main()
