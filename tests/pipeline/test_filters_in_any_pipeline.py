"""The reusable filters from a pipeline that is not instructbeam's: the shipped example, run as
a user would run it (a script on FnApiRunner), read back with pyarrow; plus the row adapter."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import apache_beam as beam
import pyarrow.parquet as pq
from apache_beam.testing.util import assert_that, equal_to

from pipelines.transforms.dataset_input import ToInstructionRecords
from schemas import RECORD_SCHEMA

ROOT = Path(__file__).resolve().parents[2]
PASSAGE = ("The river rises in the northern hills and runs south through farmland, two market "
           "towns and a long wooded valley before it reaches the sea at a wide estuary where "
           "birds gather every winter and fishing boats wait for the tide to turn each day.")
ROWS = [
    {"n": 1, "instruction": "Name three primary colors.", "output": "Red, yellow and blue."},
    {"n": 2, "instruction": "Name three primary colours.", "output": "Red, yellow, blue."},
    {"n": 3, "instruction": "Tell me about yourself.",
     "output": "As an AI language model, I have no hobbies."},
    {"n": 4, "instruction": "Say nothing at all.", "output": ""},
    {"n": 5, "prompt": "This row has no instruction field.", "output": "x"},
    {"n": 6, "instruction": "Summarize the following paragraph.", "input": PASSAGE,
     "output": "A river flows from hills to the sea."},
    {"n": 7, "instruction": "Write a one-sentence summary of this passage.", "input": PASSAGE,
     "output": "A river flows from hills to the sea."},
    {"n": 8, "instruction": "Convert 5 kilometers to miles.", "output": "About 3.1 miles."},
    {"n": 8, "instruction": "Convert 5 kilometers to miles.", "output": "About 3.1 miles."},
]


def _run_example(tmp_path: Path) -> Path:
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    prefix = tmp_path / "out" / "filtered"
    subprocess.run([sys.executable, str(ROOT / "examples" / "filter_your_pipeline.py"),
                    str(rows), str(prefix), "--runner=FnApiRunner"],
                   check=True, cwd=tmp_path, capture_output=True, text=True)
    return prefix


def _jsonl(pattern_dir: Path, glob: str) -> list[dict]:
    return [json.loads(line) for p in sorted(pattern_dir.glob(glob))
            for line in p.read_text().splitlines()]


def test_example_pipeline_routes_every_row(tmp_path):
    prefix = _run_example(tmp_path)
    out = prefix.parent
    (kept_file,) = out.glob("filtered-kept-*.parquet")
    table = pq.read_table(kept_file)
    assert table.schema.names == RECORD_SCHEMA.names
    kept = sorted(table.to_pylist(), key=lambda r: r["order_value"])
    assert [r["instruction"] for r in kept] == [
        "Name three primary colors.", "Summarize the following paragraph.",
        "Convert 5 kilometers to miles."]

    rejected = {(r["order_value"], r["reason"]) for r in _jsonl(out, "filtered-rejected-*")}
    assert rejected == {(2.0, "not_novel"), (3.0, "illegal_word"), (4.0, "empty_output"),
                        (7.0, "near_duplicate"), (8.0, "not_novel")}
    by_reason = {r["reason"]: r for r in _jsonl(out, "filtered-rejected-*")}
    assert by_reason["not_novel"]["score"] > 0.7
    summary = next(r for r in kept if r["order_value"] == 6.0)
    near = by_reason["near_duplicate"]
    assert near["near_dup_survivor"] == summary["id"] and near["score"] >= 0.7

    failed = _jsonl(out, "filtered-failed-*")
    assert len(failed) == 1 and "field 'instruction' is missing" in failed[0]["message"]
    assert len(kept) + len(_jsonl(out, "filtered-rejected-*")) + len(failed) == len(ROWS)


def test_row_ids_do_not_depend_on_arrival_order(tmp_path):
    def ids(rows: list[dict], name: str) -> list[str]:
        with beam.Pipeline(runner="FnApiRunner") as p:
            converted = p | beam.Create(rows) | ToInstructionRecords()
            _ = (converted.records | beam.Map(lambda r: r.id)
                 | beam.io.WriteToText(str(tmp_path / name), num_shards=1))
        return sorted(next(tmp_path.glob(f"{name}-*")).read_text().split())

    forward, backward = ids(ROWS, "forward"), ids(list(reversed(ROWS)), "backward")
    assert forward == backward
    assert len(set(forward)) == len(ROWS) - 1  # unique, even for the twin rows; one failed


def test_repeated_id_is_a_dead_letter():
    rows = [{"id": "a", "instruction": "One.", "output": "1"},
            {"id": "a", "instruction": "Two.", "output": "2"},
            {"id": "b", "instruction": "Three.", "output": "3"}]
    with beam.Pipeline(runner="FnApiRunner") as p:
        converted = p | beam.Create(rows) | ToInstructionRecords(id_field="id")
        assert_that(converted.records | beam.Map(lambda r: r.id), equal_to(["a", "b"]),
                    label="records")
        assert_that(converted.failed | beam.Map(lambda f: "repeats 'a'" in f.message),
                    equal_to([True]), label="failed")
