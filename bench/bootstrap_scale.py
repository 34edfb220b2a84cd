"""Self-Instruct at 5K, 20K and 50K instructions on the local runner against an instant fake
server: wall time and peak RSS, and how both grow with the target.

The fake answers at once (no model), so what is measured is our side: the streaming
bootstrap (prompt building, parsing, incremental exact novelty over the growing pool), the
classification and instance stages, Beam and the Parquet writers. Each size runs as its own
process (`--one N`), sampled with bench/peak_memory.py's `measure`. The fake's instructions
are random phrases over a large vocabulary, so the pool keeps growing (the test fakes repeat
a few thousand combinations and would saturate the novelty rule first).

    .venv/bin/python bench/bootstrap_scale.py [--sizes 5000,20000,50000]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from peak_memory import GIB, measure  # noqa: E402

VOCAB = [f"{a}{b}" for a in ("ka", "lo", "mi", "nu", "po", "ra", "se", "ti", "vu", "ze",
                             "ba", "do", "fe", "gi", "ho", "ju")
         for b in ("rat", "mel", "sun", "dor", "pik", "lan", "tev", "wos", "nix", "bul",
                   "cam", "dep", "fig", "gol", "hux", "jem", "kol", "lup", "mav", "nog")]


def _rng(*parts: object) -> random.Random:
    return random.Random(int(hashlib.sha256("\x1f".join(map(str, parts)).encode())
                             .hexdigest()[:12], 16))


def completion(prompt: str, seed: int) -> str:
    """Instruction prompts: 5 random 9-word tasks; classification: " No"; instances: two
    input/output examples."""
    if prompt.rstrip().endswith("Is it classification?"):
        return " No"
    rng = _rng(prompt, seed)
    if prompt.endswith("\n") and "Task:" in prompt:
        return "".join(f"Example {i}\nInput: case {rng.randint(1, 10**6)}\nOutput: answer "
                       f"{rng.randint(1, 10**6)}\n" for i in (1, 2))
    n = int(re.findall(r"(\d+)\.$", prompt)[0])
    items = [f"Explain {' '.join(rng.sample(VOCAB, 7))} clearly." for _ in range(5)]
    return " " + items[0] + "".join(f"\n{n + i}. {t}" for i, t in enumerate(items[1:], 1))


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        return

    def do_GET(self) -> None:
        self._send({"data": [{"id": "scale"}]})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        text = completion(body["prompt"], int(body.get("seed") or 0))
        self._send({"choices": [{"index": 0, "text": text, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": len(text.split())}})

    def _send(self, payload: dict) -> None:
        raw = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)


def run_one(n: int, base_url: str, out: str) -> None:
    from pipelines.config import RunConfig
    from pipelines.recipes.self_instruct.config import SelfInstructConfig
    from pipelines.run import run
    from pipelines.settings import CacheConfig, GeneratorConfig

    cfg = RunConfig(recipe="self_instruct", output_dir=out, num_shards=4,
                    generator=GeneratorConfig(backend="openai", base_url=base_url,
                                              model="scale", revision="scale-v1",
                                              max_concurrency=32, timeout_s=60),
                    self_instruct=SelfInstructConfig(num_instructions=n),
                    cache=CacheConfig(enabled=False))
    manifest = run(cfg).manifest
    print(json.dumps({"instructions": manifest["rows"].get("instructions"),
                      "data": manifest["rows"].get("data"),
                      "prompts": manifest["stages"]["instruction_gen"]["in"]}))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="5000,20000,50000")
    parser.add_argument("--one", type=int)
    parser.add_argument("--base-url")
    parser.add_argument("--out")
    args = parser.parse_args()
    if args.one:
        run_one(args.one, args.base_url, args.out)
        return 0
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    base_url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    print(f"machine: {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f} at start")
    rows = []
    for n in (int(x) for x in args.sizes.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            env_cmd = [sys.executable, __file__, "--one", str(n), "--base-url", base_url,
                       "--out", f"{tmp}/out"]
            os.environ["INSTRUCTBEAM_PROGRESS"] = "0"
            code, wall, rss, _, _ = measure(env_cmd)
        assert code == 0, f"the {n} run failed"
        rows.append((n, wall, rss))
        print(f"{n:>7} instructions: {wall:7.1f} s, peak RSS {rss / GIB:.2f} GiB, "
              f"load {os.getloadavg()[0]:.1f}", flush=True)
    n0, w0, r0 = rows[0]
    for n, wall, rss in rows[1:]:
        print(f"{n0} -> {n} ({n / n0:.0f}x): time x{wall / w0:.1f}, peak RSS x{rss / r0:.2f}")
    httpd.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
