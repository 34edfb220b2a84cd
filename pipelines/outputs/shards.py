"""Deterministic Parquet shards: stable hash sharding, rows sorted by id, every shard written.

`WriteToParquet(num_shards=N)` assigns rows to shards at random; the same run would then give
different files. Here a row's shard is a hash of its id, each shard's rows are sorted by id,
and all N shards are written (empty ones included), so the same records always give
byte-identical files. Files go through Beam FileSystems (local or gs://).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from schemas import to_row


def shard_of(record_id: str, num_shards: int) -> int:
    return int(hashlib.sha256(record_id.encode("utf-8")).hexdigest()[:8], 16) % num_shards


def shard_name(index: int, num_shards: int) -> str:
    return f"part-{index:05d}-of-{num_shards:05d}.parquet"


def write_table(path: str, rows: list[dict[str, Any]], schema: pa.Schema) -> None:
    table = pa.Table.from_pylist(rows, schema=schema)
    with FileSystems.create(path, mime_type="application/octet-stream",
                            compression_type="uncompressed") as handle:
        pq.write_table(table, handle, compression="zstd", write_statistics=True)


class _WriteShardFn(beam.DoFn):
    def __init__(self, directory: str, schema: pa.Schema, num_shards: int) -> None:
        self._directory = directory
        self._schema = schema
        self._num_shards = num_shards

    def process(self, element: tuple[int, Iterable[Any]]) -> Iterable[str]:
        index, items = element
        rows = sorted((to_row(item) for item in items if item is not None),
                      key=lambda row: (str(row["id"]), repr(sorted(row.items()))))
        path = FileSystems.join(self._directory, shard_name(index, self._num_shards))
        write_table(path, rows, self._schema)
        yield path


class WriteShards(beam.PTransform):
    """Write records (dataclasses from `schemas`) as N deterministic Parquet shards."""

    def __init__(self, directory: str, schema: pa.Schema, num_shards: int = 1) -> None:
        super().__init__()
        self._directory = directory
        self._schema = schema
        self._num_shards = num_shards

    def expand(self, records: beam.PCollection) -> beam.PCollection:
        n = self._num_shards
        keyed = records | "Key" >> beam.Map(lambda r: (shard_of(_record_id(r), n), r))
        every_shard = (records.pipeline
                       | "AllShards" >> beam.Create([(i, None) for i in range(n)]))
        return (
            (keyed, every_shard)
            | "Merge" >> beam.Flatten()
            | "Group" >> beam.GroupByKey()
            | "Write" >> beam.ParDo(_WriteShardFn(self._directory, self._schema, n))
        )


def _record_id(item: Any) -> str:
    record = getattr(item, "record", item)  # RejectedRecord wraps the record
    return str(record.id)
