"""A small finished run on disk, written with the real Arrow schemas, for the report.html tests:
Self-Instruct-like instructions with novelty scores, #InsTag tags, an Explore-Instruct nodes
table, and a hostile text in every place where model output reaches the page."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from schemas import FAILURE_SCHEMA, RECORD_SCHEMA, REJECTED_SCHEMA, InstructionRecord
from schemas.records import RejectedRecord, to_row
from schemas.tree import NODE_SCHEMA, NodeRow

HOSTILE = '</title></text><script>alert("pwned")</script><svg onload=alert(1)> & \'q\''
EXPECTED_CHARTS = ("Records per stage", "Rejections by reason",
                   "ROUGE-L to the most similar pool instruction", "Instruction length (words)",
                   "Input length (words)", "Output length (words)", "Tag frequency",
                   "Tag coverage", "Explore-Instruct task tree")


def _record(i: int, **kw: Any) -> InstructionRecord:
    base = dict(id=f"r{i:03d}", content_hash=f"h{i}", recipe="self_instruct",
                stage="instance_gen", round=1, instruction=f"Write a short poem about item {i}.",
                input="" if i % 3 else f"item {i} and some context words", output="A poem " * i)
    return InstructionRecord(**(base | kw))  # type: ignore[arg-type]


def _write(directory: Path, rows: list[dict], schema: pa.Schema) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema),
                   directory / "part-00000-of-00001.parquet")


def write_fake_run(out: Path) -> dict[str, Any]:
    """Write shards under `out` and return the manifest dict (not written: callers decide)."""
    nodes = [NodeRow(id="n0", parent_id=None, depth=0, task_name="root_task", raw_task_name="Root",
                     reason="", path="root_task", level_order=0, origin="given", children=2,
                     extend_requests=1, extend_stop="target_reached", new_children=2,
                     examples_given=2, enrich_requests=1, examples_enriched=5,
                     examples_filtered=5, examples_sampled=2, pruned=False),
             NodeRow(id="n1", parent_id="n0", depth=1, task_name=HOSTILE, raw_task_name=HOSTILE,
                     reason="", path="root_task/x", level_order=1, origin="explored",
                     children=0, extend_requests=0, extend_stop="depth_limit", new_children=0,
                     examples_given=2, enrich_requests=1, examples_enriched=4,
                     examples_filtered=4, examples_sampled=2, pruned=False),
             NodeRow(id="n2", parent_id="n0", depth=1, task_name="pruned_task",
                     raw_task_name="Pruned", reason="", path="root_task/pruned_task",
                     level_order=2, origin="explored", children=0, extend_requests=0,
                     extend_stop="depth_limit", new_children=0, examples_given=2,
                     enrich_requests=0, examples_enriched=0, examples_filtered=0,
                     examples_sampled=0, pruned=True, prune_score=0.9,
                     pruned_similar_to="root_task")]
    kept = [_record(i, rouge_l_max=0.1 + 0.05 * i, node_id=("n0", "n1")[i % 2],
                    tags=("poem", "creative writing") + ((HOSTILE,) if i == 1 else ()),
                    tag_count=2 + (i == 1)) for i in range(1, 9)]
    kept[0] = dataclasses.replace(kept[0], instruction=HOSTILE)
    rejected = [RejectedRecord(_record(20 + i, stage="instruction_gen", rouge_l_max=0.75 + 0.05 * i,
                                       most_similar=HOSTILE if i == 0 else "Write a poem."),
                               "novelty", "rouge_l", "not_novel", 0.75 + 0.05 * i)
                for i in range(4)]
    rejected.append(RejectedRecord(_record(30, tags=("poem", "math")), "instag_sample", "cfd",
                                   "not_sampled"))
    _write(out / "data", [to_row(r) for r in kept], RECORD_SCHEMA)
    _write(out / "instructions", [to_row(r) for r in kept], RECORD_SCHEMA)
    _write(out / "rejected", [to_row(r) for r in rejected], REJECTED_SCHEMA)
    _write(out / "failed", [], FAILURE_SCHEMA)
    _write(out / "nodes", [dataclasses.asdict(n) for n in nodes], NODE_SCHEMA)
    return {
        "schema_version": "1.0", "recipe": "self_instruct",
        "config": {"self_instruct": {"rouge_threshold": 0.7}},
        "generator": {"model": HOSTILE, "revision": "r1", "served_name": "m",
                      "backend": "openai"},
        "input_rows": 5,
        "stages": {
            "instruction_gen": {"in": 4, "ok": 3, "failed": 1, "produced": 14, "kept": 12,
                                "rejected": {"too_short": 2}},
            "novelty": {"produced": 12, "kept": 8, "rejected": {"not_novel": 4}},
            "clf_identify": {"in": 8, "ok": 8, "failed": 0},
            "instag_sample": {"produced": 9, "kept": 8, "rejected": {"not_sampled": 1}},
        },
        "rows": {"data": 8, "instructions": 8, "nodes": 3, "rejected": 5, "failed": 0},
        "files": {}, "accounting": [{"stage": "novelty", "identity": "x", "holds": True,
                                     "values": [1, 1]}],
        "run": {"started": "2026-01-01T00:00:00Z", "duration_s": 1.5,
                "generator_usage": {"instruction_gen": {"requests": 4, "cache_hits": 1}},
                "versions": {"instructbeam": "0.1.0"}},
    }
