"""Whole Self-Instruct recipe vs the raw server, one embedded SmolLM2 server, one concurrency.

(b) the recipe (instructions + classification + instances, no cache) runs against the
server through a recording proxy (the `endpoint` override the tests use); (a) the same
requests, as recorded, are replayed straight to the server by a thread pool of the same
concurrency, all available at once. Completion tokens per second of (b) / (a) says how much
of the server's capacity the recipe keeps busy (target >= 0.85). With `--old <commit>`, the
same recipe at that commit (e.g. e5c8d98: unrolled rounds) runs through the proxy too, from
a `git archive` of it.

    .venv/bin/python bench/recipe_throughput.py [--instructions 40] [--concurrency 32]
        [--old e5c8d98]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipelines.config import load_config  # noqa: E402
from pipelines.generators import vllm_server  # noqa: E402
from pipelines.generators.backends import server_spec  # noqa: E402
from pipelines.run import run  # noqa: E402

DEMO = ROOT / "configs" / "self_instruct_demo.yaml"


class Proxy:
    """Forwards the OpenAI-compatible calls to `upstream` and records every POST body with
    its completion tokens."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.bodies: list[tuple[str, dict]] = []
        self.tokens = 0
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                return

            def do_GET(self) -> None:
                with urllib.request.urlopen(proxy.upstream + self.path.removeprefix("/v1"),
                                            timeout=60) as resp:
                    self._send(resp.status, resp.read())

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                path = self.path.removeprefix("/v1")
                req = urllib.request.Request(proxy.upstream + path, raw,
                                             {"Content-Type": "application/json"})
                with urllib.request.urlopen(req, timeout=900) as resp:
                    answer = resp.read()
                with proxy._lock:
                    proxy.bodies.append((path, json.loads(raw)))
                    proxy.tokens += json.loads(answer)["usage"]["completion_tokens"]
                self._send(200, answer)

            def _send(self, code: int, raw: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def reset(self) -> None:
        with self._lock:
            self.bodies, self.tokens = [], 0


def replay(base_url: str, bodies: list[tuple[str, dict]], concurrency: int
           ) -> tuple[float, int]:
    def one(item: tuple[str, dict]) -> int:
        path, body = item
        req = urllib.request.Request(base_url + path, json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=900) as resp:
            return int(json.loads(resp.read())["usage"]["completion_tokens"])

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        tokens = sum(pool.map(one, bodies))
    return time.perf_counter() - start, tokens


def overrides(tmp: str, n: int, concurrency: int) -> dict:
    return {"output_dir": f"{tmp}/out", "cache.enabled": False,
            "generator.max_concurrency": concurrency,
            "self_instruct.num_instructions": n}


OLD_RUN = """
import sys, time
import yaml
from pipelines.config import load_config
from pipelines.run import run
sets = (a.split("=", 1) for a in sys.argv[3:])
cfg = load_config(sys.argv[1], {k: yaml.safe_load(v) for k, v in sets})
t0 = time.perf_counter()
run(cfg, endpoint=sys.argv[2])
print(f"OLD_WALL {time.perf_counter() - t0:.3f}")
"""


def old_recipe(commit: str, proxy: Proxy, n: int, concurrency: int) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit],
                                 capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(src)], input=archive, check=True)
        sets = [f"{k}={v}" for k, v in overrides(tmp, n, concurrency).items()]
        proxy.reset()
        done = subprocess.run([sys.executable, "-c", OLD_RUN, str(src / DEMO.relative_to(ROOT)),
                               proxy.url, *sets], cwd=src, capture_output=True, text=True,
                              env=os.environ | {"PYTHONPATH": str(src),
                                                "INSTRUCTBEAM_PROGRESS": "0"})
        assert done.returncode == 0, done.stderr[-3000:]
        wall = float(done.stdout.split("OLD_WALL ")[1].split()[0])
        return wall, proxy.tokens


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--instructions", type=int, default=40)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--old", default=None, help="also run the recipe at this commit")
    args = parser.parse_args()
    os.environ["INSTRUCTBEAM_PROGRESS"] = "0"
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(DEMO, overrides(tmp, args.instructions, args.concurrency))
    t0 = time.perf_counter()
    server = vllm_server.get_or_start(server_spec(cfg.generator))
    print(f"server start: {time.perf_counter() - t0:.1f} s; {os.cpu_count()} CPUs, "
          f"load {os.getloadavg()[0]:.1f}")
    proxy = Proxy(server.base_url)
    try:
        with tempfile.TemporaryDirectory() as tmp:  # warm-up: compile paths, fill caches
            run(load_config(DEMO, overrides(tmp, 4, args.concurrency)), endpoint=proxy.url)
        proxy.reset()
        with tempfile.TemporaryDirectory() as tmp:
            cfg = load_config(DEMO, overrides(tmp, args.instructions, args.concurrency))
            t0 = time.perf_counter()
            manifest = run(cfg, endpoint=proxy.url).manifest
            b_wall, b_tok = time.perf_counter() - t0, proxy.tokens
        bodies = list(proxy.bodies)
        stages = manifest["stages"]
        print(f"(b) recipe: {len(bodies)} requests ({stages['instruction_gen']['in']} "
              f"instruction prompts, {stages['novelty']['kept']} instructions, "
              f"{stages['instance_gen']['kept']} instances), {b_tok} tokens in {b_wall:.1f} s "
              f"= {b_tok / b_wall:.1f} tok/s; load {os.getloadavg()[0]:.1f}", flush=True)
        a_wall, a_tok = replay(server.base_url, bodies, args.concurrency)
        print(f"(a) raw server, the same requests at concurrency {args.concurrency}: {a_tok} "
              f"tokens in {a_wall:.1f} s = {a_tok / a_wall:.1f} tok/s; load "
              f"{os.getloadavg()[0]:.1f}", flush=True)
        print(f"(b)/(a) = {(b_tok / b_wall) / (a_tok / a_wall):.2f} (target >= 0.85)")
        if args.old:
            o_wall, o_tok = old_recipe(args.old, proxy, args.instructions, args.concurrency)
            print(f"old recipe ({args.old}, same config): {o_tok} tokens in "
                  f"{o_wall:.1f} s = {o_tok / o_wall:.1f} tok/s, "
                  f"{(o_tok / o_wall) / (a_tok / a_wall):.2f} of (a); load "
                  f"{os.getloadavg()[0]:.1f}")
    finally:
        vllm_server.stop_all()


if __name__ == "__main__":
    main()
