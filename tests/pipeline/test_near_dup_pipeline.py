"""NearDuplicateFilter on FnApiRunner: same clusters and survivors as straightforward datasketch,
every record accounted for, identical output on a rerun."""

from __future__ import annotations

import json
import random
from pathlib import Path

import apache_beam as beam

from bench.near_dup_reference import reference_near_duplicates
from filters.near_dup import MinHashParams, record_text
from pipelines.outputs.manifest import read_counters, stage_table
from pipelines.transforms.near_dup import NearDuplicateFilter
from prompts import BUILTIN_SEED_TASKS, builtin_path
from schemas import InstructionRecord, content_hash, stable_id, to_row

STAGE = "near_dup_test"


def _record(text: tuple[str, str, str], key: str, origin: str = "machine") -> InstructionRecord:
    instruction, inp, out = text
    return InstructionRecord(
        id=stable_id("test", "near_dup", key, instruction, inp, out),
        content_hash=content_hash(instruction, inp, out), recipe="test", stage="seed", round=0,
        instruction=instruction, input=inp, output=out, origin=origin)


def _perturb(text: str, rng: random.Random, edits: int = 1) -> str:
    words = text.split()
    for _ in range(edits):
        words[rng.randrange(len(words))] = rng.choice(["zebra", "quartz", "violet", "marble"])
    return " ".join(words)


def planted_records() -> list[InstructionRecord]:
    """The 50 built-in seed tasks (instruction + first instance) and planted near duplicates:
    one-word edits, case-only copies, exact copies, a chain of edits, and 2-edit variants of
    short texts (which may or may not stay above the threshold: the reference decides)."""
    rng = random.Random(7)
    base = []
    with open(builtin_path(BUILTIN_SEED_TASKS), encoding="utf-8") as f:
        for line in f:
            task = json.loads(line)
            inst = task["instances"][0]
            base.append((task["instruction"], inst["input"], inst["output"]))
    records = [_record(t, f"base{i}") for i, t in enumerate(base)]
    for i, (ins, inp, out) in enumerate(base[:40]):
        kind = i % 5
        if kind == 0:
            records.append(_record((ins, inp, _perturb(out, rng) if out.split() else out),
                                   f"edit{i}"))
        elif kind == 1:
            records.append(_record((ins.upper(), inp, out), f"case{i}", origin="seed"))
        elif kind == 2:
            records += [_record((ins, inp, out), f"copy{i}.{k}") for k in range(3)]
        elif kind == 3:
            first = _perturb(ins, rng)
            records.append(_record((first, inp, out), f"chain{i}.1"))
            records.append(_record((_perturb(first, rng), inp, out), f"chain{i}.2"))
        else:
            records.append(_record((_perturb(ins, rng, 2), inp, out), f"two{i}"))
    return records


def _run(records: list[InstructionRecord], out: Path, **kwargs) -> tuple[list[dict],
                                                                          list[dict], dict]:
    pipeline = beam.Pipeline(runner="FnApiRunner")
    routed = (pipeline | beam.Create(records)
              | NearDuplicateFilter(stage=STAGE, **kwargs))
    for name, pcoll in (("kept", routed.kept), ("rejected", routed.rejected)):
        (pcoll
         | f"{name}/Json" >> beam.Map(lambda r: json.dumps(to_row(r), sort_keys=True))
         | f"{name}/Write" >> beam.io.WriteToText(str(out / name), shard_name_template=""))
    result = pipeline.run()
    result.wait_until_finish()
    rows = {name: sorted((json.loads(line) for line in (out / name).read_text().splitlines()),
                         key=lambda row: row["id"])
            for name in ("kept", "rejected")}
    return rows["kept"], rows["rejected"], stage_table(read_counters(result))[STAGE]


def _reference(records: list[InstructionRecord], params: MinHashParams, order=None):
    ids = [r.id for r in records]
    texts = [record_text(r, params.text_fields) for r in records]
    return reference_near_duplicates(ids, texts, params, order)


def test_same_clusters_and_survivors_as_datasketch_and_deterministic(tmp_path):
    records = planted_records()
    params = MinHashParams()
    ref = _reference(records, params)
    dups = {rid for rid, m in ref.items() if m.survivor != rid}
    assert len(dups) >= 30 and len(ref) > len(dups), "the planted duplicates must cluster"

    kept, rejected, counters = _run(records, tmp_path / "a")
    assert {r["id"] for r in rejected} == dups
    assert {r["id"] for r in kept} == {r.id for r in records} - dups
    for row in rejected:
        match = ref[row["id"]]
        assert row["reason"] == "near_duplicate" and row["filter_name"] == "minhash_lsh"
        assert row["filter_stage"] == STAGE
        assert (row["near_dup_cluster"], row["near_dup_survivor"]) == (match.cluster,
                                                                       match.survivor)
        assert row["score"] == row["near_dup_jaccard"] == match.jaccard
    for row in kept:
        match = ref.get(row["id"])
        got = (row["near_dup_cluster"], row["near_dup_survivor"], row["near_dup_jaccard"])
        assert got == ((match.cluster, row["id"], 1.0) if match else (None, None, None))
    # Unclustered records pass through unchanged.
    by_id = {r.id: r for r in records}
    assert all(to_row(by_id[row["id"]]) == row for row in kept if row["id"] not in ref)
    assert counters["produced"] == len(records)
    assert counters["kept"] == len(kept) and counters["rejected"] == {"near_duplicate":
                                                                       len(dups)}

    shuffled = records[:]
    random.Random(1).shuffle(shuffled)
    again = _run(shuffled, tmp_path / "b", max_bucket_distinct=1000, batch_size=7)
    assert again == (kept, rejected, counters)


def test_order_by_chooses_survivors_like_the_reference(tmp_path):
    records = planted_records()
    params = MinHashParams(text_fields=("instruction", "output"))

    def seeds_first(record: InstructionRecord) -> tuple[bool, int]:
        return record.origin != "seed", len(record.instruction)

    ref = _reference(records, params, [seeds_first(r) for r in records])
    kept, rejected, _ = _run(records, tmp_path, params=params, order_by=seeds_first)
    assert {r["id"] for r in rejected} == {i for i, m in ref.items() if m.survivor != i}
    survivors = {r["near_dup_survivor"] for r in rejected}
    seed_ids = {r.id for r in records if r.origin == "seed"}
    assert survivors & seed_ids, "seed-origin copies must win their clusters"
    assert {(r["near_dup_cluster"], r["near_dup_survivor"]) for r in rejected} == {
        (ref[r["id"]].cluster, ref[r["id"]].survivor) for r in rejected}


def test_a_bucket_of_many_copies_stays_exact_under_a_small_cap(tmp_path):
    text = ("Summarize the following paragraph in one sentence.", "Rivers carry water and "
            "sediment from mountains to the sea, shaping valleys on the way.", "Rivers shape "
            "valleys as they carry water and sediment to the sea.")
    records = [_record(text, f"copy{k}") for k in range(30)]
    records.append(_record((text[0], text[1], _perturb(text[2], random.Random(3))), "edit"))
    records.append(_record(("Name three primary colors.", "", "Red, blue and yellow."), "other"))
    ref = _reference(records, MinHashParams())
    kept, rejected, _ = _run(records, tmp_path, max_bucket_distinct=2)
    assert {r["id"] for r in rejected} == {i for i, m in ref.items() if m.survivor != i}
    assert len(rejected) == 30 and len(kept) == 2
    assert len({r["near_dup_survivor"] for r in rejected}) == 1
