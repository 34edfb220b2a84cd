"""Generation throughput through the pipeline vs the same vLLM server driven directly.

One run, one server (the embedded SmolLM2-135M on vLLM's CPU build): the same requests
(instance-generation prompts for the built-in seed tasks, several seeds each) are sent
(1) directly, by a thread pool of the same concurrency posting to /v1/completions, and
(2) through our Beam `Generate` transform on FnApiRunner (handler, retries, no cache), in
alternating order, and completion tokens per second are compared. Then the demo config runs
cold and again from the response cache.

    .venv/bin/python bench/throughput_bench.py [--requests 96] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import apache_beam as beam  # noqa: E402

from pipelines.config import load_config  # noqa: E402
from pipelines.generators import vllm_server  # noqa: E402
from pipelines.generators.backends import resolve_identity, server_spec  # noqa: E402
from pipelines.generators.generation import GenerationRequest  # noqa: E402
from pipelines.generators.handler import GeneratorModelHandler  # noqa: E402
from pipelines.outputs.manifest import read_counters  # noqa: E402
from pipelines.recipes.self_instruct.seeds import read_seed_tasks  # noqa: E402
from pipelines.run import run  # noqa: E402
from pipelines.settings import GeneratorConfig, SamplingConfig  # noqa: E402
from pipelines.transforms.route import Generate  # noqa: E402
from prompts import load_prompt  # noqa: E402


def build_requests(n: int, tag: str) -> list[GenerationRequest]:
    template = load_prompt("self_instruct", "instance_input_first", 1)
    sampling = SamplingConfig(128, 0.7, 0.95, 0.0, 0.0, ("Task:",)).as_request()
    seeds = read_seed_tasks("builtin")
    out = []
    for i in range(n):
        task = seeds[i % len(seeds)]
        out.append(GenerationRequest(
            request_id=f"{tag}-{i}", stage="bench", round=0, subject_id=str(i),
            prompt=template.render(instruction=task.instruction), prompt_ref=template.ref,
            sampling=sampling, seed=1000 + i))
    return out


def direct(base_url: str, model: str, requests: list[GenerationRequest],
           concurrency: int) -> tuple[float, int]:
    def one(req: GenerationRequest) -> int:
        body = {"model": model, "prompt": req.prompt, "seed": req.seed, **req.sampling}
        http = urllib.request.Request(f"{base_url}/completions", json.dumps(body).encode(),
                                      {"Content-Type": "application/json"})
        with urllib.request.urlopen(http, timeout=600) as resp:
            return int(json.loads(resp.read())["usage"]["completion_tokens"])

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        tokens = sum(pool.map(one, requests))
    return time.perf_counter() - start, tokens


def through_pipeline(base_url: str, cfg: GeneratorConfig, requests: list[GenerationRequest]
                     ) -> tuple[float, int]:
    identity = resolve_identity(cfg)
    handler = GeneratorModelHandler(cfg, identity, None, endpoint=base_url)
    start = time.perf_counter()
    p = beam.Pipeline(runner="FnApiRunner")
    _ = (p | beam.Create(requests)
         | Generate(handler, stage="bench", recipe="bench", generator=identity.model,
                    model_identifier="bench"))
    result = p.run()
    result.wait_until_finish()
    elapsed = time.perf_counter() - start
    usage = read_counters(result)["instructbeam/generator/bench"]
    assert usage.get("failed", 0) == 0, usage
    return elapsed, usage["completion_tokens"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=96)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    cfg = GeneratorConfig(max_concurrency=args.concurrency, timeout_s=600)
    spec = server_spec(cfg)
    t0 = time.perf_counter()
    server = vllm_server.get_or_start(spec)
    print(f"server start: {time.perf_counter() - t0:.1f} s")
    try:
        direct(server.base_url, cfg.model, build_requests(8, "warmup"), args.concurrency)
        rows = []
        for rep in range(args.repeats):
            reqs = build_requests(args.requests, f"r{rep}")
            d_s, d_tok = direct(server.base_url, cfg.model, reqs, args.concurrency)
            # new seeds for the pipeline pass so vLLM's prefix cache helps both sides equally
            reqs = [replace(r, seed=r.seed + 7) for r in reqs]
            p_s, p_tok = through_pipeline(server.base_url, cfg, reqs)
            rows.append((d_tok / d_s, p_tok / p_s))
            print(f"rep {rep}: direct {d_tok} tok in {d_s:.1f} s = {d_tok / d_s:.0f} tok/s; "
                  f"pipeline {p_tok} tok in {p_s:.1f} s = {p_tok / p_s:.0f} tok/s")
        d_med = statistics.median(r[0] for r in rows)
        p_med = statistics.median(r[1] for r in rows)
        print(f"median: direct {d_med:.0f} tok/s, pipeline {p_med:.0f} tok/s, "
              f"ratio {p_med / d_med:.2f} (target >= 0.9; pipeline time includes Beam start-up)")
    finally:
        vllm_server.stop_all()

    with tempfile.TemporaryDirectory() as tmp:
        demo = load_config(ROOT / "configs" / "self_instruct_demo.yaml",
                           {"output_dir": f"{tmp}/out", "cache.dir": f"{tmp}/cache"})
        t0 = time.perf_counter()
        run(demo)
        cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        run(demo)
        warm = time.perf_counter() - t0
        print(f"demo config: cold {cold:.1f} s (incl. server start), cached rerun {warm:.1f} s, "
              f"ratio {cold / warm:.0f}x")


if __name__ == "__main__":
    main()
