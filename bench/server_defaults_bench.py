"""Decode speed of the embedded server: vLLM's defaults vs the settings chosen for this machine.

One run, servers started back to back with the project's own start code (one at a time, so
they do not compete for the cores): "old" is what every embedded server used before
(`--dtype` left to vLLM, which picks bfloat16; vLLM's automatic CPU binding, which keeps one
core for its scheduler), "new" is `server_spec(GeneratorConfig())` (see
`pipelines/generators/server_settings.py`), "float32" forces float32 on the same CPUs as "new" (the
choice for CPUs without native bf16), "float32-auto" is float32 on vLLM's own binding. Each
server gets a warm-up, then `--streams` concurrent requests of exactly `--tokens` tokens
(ignore_eos), then one long prompt (prefill). On a shared machine quote the ratios, not the
absolute figures, and alternate rounds (`--rounds`): other processes on the cores hurt a
server that binds all of them far more than one that leaves a core free.

    .venv/bin/python bench/server_defaults_bench.py [--streams 16] [--tokens 64] [--rounds 1]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipelines.generators import vllm_server  # noqa: E402
from pipelines.generators.backends import server_settings, server_spec  # noqa: E402
from pipelines.generators.server_settings import NATIVE_BF16_FLAGS, read_machine_facts  # noqa: E402
from pipelines.settings import GeneratorConfig  # noqa: E402

MODEL = "smollm2-135m"


def _post(base_url: str, body: dict) -> dict:
    req = urllib.request.Request(f"{base_url}/completions", json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=1800) as resp:  # loopback only
        return json.loads(resp.read())


def decode(base_url: str, streams: int, tokens: int, seed: int) -> tuple[float, int]:
    def one(i: int) -> int:
        out = _post(base_url, {"model": MODEL, "prompt": f"Write a story about robot {i}.",
                               "max_tokens": tokens, "ignore_eos": True, "temperature": 0.7,
                               "seed": seed + i})
        return int(out["usage"]["completion_tokens"])

    start = time.perf_counter()
    with ThreadPoolExecutor(streams) as pool:
        done = sum(pool.map(one, range(streams)))
    return time.perf_counter() - start, done


def prefill(base_url: str, words: int) -> tuple[float, int]:
    prompt = " ".join(f"item{i % 97}" for i in range(words))
    start = time.perf_counter()
    out = _post(base_url, {"model": MODEL, "prompt": prompt, "max_tokens": 1, "seed": 1})
    return time.perf_counter() - start, int(out["usage"]["prompt_tokens"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--streams", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--prefill-words", type=int, default=700)
    parser.add_argument("--rounds", type=int, default=1, help="old/new/float32 cycles")
    parser.add_argument("--only", nargs="*", default=["old", "new", "float32"])
    args = parser.parse_args()
    if os.environ.get("VLLM_CPU_OMP_THREADS_BIND"):
        sys.exit("unset VLLM_CPU_OMP_THREADS_BIND: it would override every variant")

    facts = read_machine_facts()
    flags = sorted(f for f in facts.cpu_flags
                   if f.startswith(("avx512", "amx")) or f in ("avx2", *NATIVE_BF16_FLAGS))
    cfg = GeneratorConfig(model=MODEL)
    new = server_spec(cfg)
    chosen = server_settings(cfg)
    assert chosen is not None
    # Before: the bf16 folder, no --dtype (vLLM picks bfloat16), vLLM's own CPU binding.
    old = replace(new, model=str(server_spec(replace(cfg, dtype="bfloat16")).model),
                  extra_args=tuple(cfg.server_args), env=(), label="vLLM defaults")
    f32 = server_spec(replace(cfg, dtype="float32"))
    f32_auto = replace(f32, env=(), label="float32 on vLLM's CPU binding")
    variants = {"old": old, "new": new, "float32": f32, "float32-auto": f32_auto}
    print(f"machine: {len(facts.cpus)} CPUs {facts.cpus}, {facts.arch}, flags: "
          f"{' '.join(flags) or '(none of avx2/avx512/amx)'}")
    print(f"new default: {chosen.label()} — {chosen.dtype_reason}; {chosen.threads_reason}")

    results: dict[str, list[tuple[float, float]]] = {}
    for rnd in range(args.rounds):
        for name in args.only:
            spec = variants[name]
            server = vllm_server.VLLMServer(spec, on_event=lambda m: print("  " + m))
            with server:
                decode(server.base_url, 4, 8, seed=7)  # warm-up
                secs, toks = decode(server.base_url, args.streams, args.tokens, seed=100 * rnd)
                p_secs, p_toks = prefill(server.base_url, args.prefill_words)
            results.setdefault(name, []).append((toks / secs, p_secs))
            print(f"round {rnd} {name:8s} ({spec.label}): decode {toks} tok in {secs:.1f} s = "
                  f"{toks / secs:.1f} tok/s; prefill {p_toks} tok in {p_secs:.2f} s")
    if "old" in results:
        base_tps = sum(r[0] for r in results["old"]) / len(results["old"])
        base_pre = sum(r[1] for r in results["old"]) / len(results["old"])
        for name, rows in results.items():
            tps = sum(r[0] for r in rows) / len(rows)
            pre = sum(r[1] for r in rows) / len(rows)
            print(f"{name:8s}: decode {tps:.1f} tok/s = {tps / base_tps:.2f}x old; "
                  f"prefill {pre:.2f} s = {base_pre / pre:.2f}x old speed")


if __name__ == "__main__":
    main()
