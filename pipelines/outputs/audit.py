"""A small seeded random sample of kept records per source, written for a human to read.

Each record gets a rank = hash(seed, id); the k highest ranks per source are kept (Beam's
`Top.PerKey`, so no worker holds more than k records per source). The same seed and the same
records always give the same sample, whatever the bundle order.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable
from typing import Any

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from schemas import InstructionRecord

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def audit_rank(seed: int, record_id: str) -> str:
    return hashlib.sha256(f"{seed}\x1f{record_id}".encode()).hexdigest()


def source_of(record: InstructionRecord) -> str:
    return _UNSAFE.sub("_", record.origin or "unknown")


def _number(value: float) -> float | str:
    """A score as JSON allows it: NaN and the infinities become their names."""
    return value if math.isfinite(value) else str(value)


def audit_line(record: InstructionRecord) -> dict[str, Any]:
    """What a reviewer needs to judge a row: its texts, every turn of a dialogue (`messages`),
    its scores by name and the judge's rationale, the transform that derived it and from
    which rows, and where it came from. Fields a recipe leaves empty are left out."""
    line: dict[str, Any] = {"id": record.id, "instruction": record.instruction,
                            "input": record.input, "output": record.output,
                            "stage": record.stage, "round": record.round,
                            "generator": record.generator}
    if record.messages:
        line["messages"] = [{"role": m.role, "content": m.content} for m in record.messages]
    if record.scores:
        line["scores"] = {name: _number(value) for name, value in record.scores}
    optional = {"judge_rationale": record.judge_rationale, "transform": record.transform,
                "derived_from": list(record.derived_from) if record.derived_from else None,
                "origin": record.origin, "finish_reason": record.finish_reason,
                "sector": record.sector, "topic": record.topic, "rounds": record.rounds,
                "dialogue_end": record.dialogue_end, "persona": record.persona,
                "content_type": record.content_type,
                "tags": list(record.tags) if record.tags else None,
                "rouge_l_max": None if record.rouge_l_max is None else _number(record.rouge_l_max)}
    line.update({k: v for k, v in optional.items() if v is not None})
    return line


class _WriteAuditFn(beam.DoFn):
    def __init__(self, directory: str, seed: int) -> None:
        self._directory = directory
        self._seed = seed

    def process(self, element: tuple[str, Iterable[InstructionRecord]]) -> Iterable[str]:
        source, records = element
        ordered = sorted(records, key=lambda r: audit_rank(self._seed, r.id), reverse=True)
        lines = [json.dumps(audit_line(r), ensure_ascii=False, allow_nan=False)
                 for r in ordered]
        path = FileSystems.join(self._directory, f"{source}.jsonl")
        with FileSystems.create(path, compression_type="uncompressed") as handle:
            handle.write(("\n".join(lines) + "\n").encode("utf-8"))
        yield path


class WriteAuditSample(beam.PTransform):
    """Write `per_source` kept records per source to `<directory>/<source>.jsonl`."""

    def __init__(self, directory: str, *, per_source: int = 20, seed: int = 0) -> None:
        super().__init__()
        self._directory = directory
        self._per_source = per_source
        self._seed = seed

    def expand(self, records: beam.PCollection) -> beam.PCollection:
        seed = self._seed
        return (
            records
            | "BySource" >> beam.Map(lambda r: (source_of(r), r))
            | "Sample" >> beam.combiners.Top.PerKey(
                self._per_source, key=lambda r: audit_rank(seed, r.id))
            | "Write" >> beam.ParDo(_WriteAuditFn(self._directory, seed))
        )
