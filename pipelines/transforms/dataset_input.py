"""Existing datasets (JSONL, Parquet or a JSON array) as input records, for filter-only runs.

Inputs are local paths or globs, any Beam filesystem (``gs://``) for Dataflow jobs, or
``pkg://<package>/<file>``: a data file shipped inside an installed Python package (a corpus
installed from the package index, e.g. the filter demo's ShareGPT conversations), resolved on
the machine that reads it. ``max_rows_per_file`` reads a slice: the first N rows of each file.
The driver validates every file before the pipeline starts (a bad row is one error naming
file, line or row, and field, and nothing is written); the pipeline then reads each file in
one worker, streaming, so a record keeps its (file, row) position: the greedy filters' order.
"""

from __future__ import annotations

import glob
import importlib.resources
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

import apache_beam as beam
import pyarrow.parquet as pq
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from pipelines.errors import InputError
from pipelines.settings import InputConfig
from pipelines.transforms.conversations import canonical, first_exchange, read_messages
from pipelines.transforms.route import FAILED, count
from schemas import FailureRecord, InstructionRecord, content_hash, stable_id
from schemas.jsonl import iter_json_lines

RECIPE = "filter"


def input_files(cfg: InputConfig) -> list[str]:
    """The input's files in a fixed order: a local path or glob, or any Beam filesystem
    (``gs://bucket/data/*.parquet``) so a Dataflow job's workers can read the same files."""
    if _packaged(cfg.path):
        _package_file(cfg.path)  # raises when the package or its file is missing
        return [cfg.path]
    if _remote(cfg.path):
        try:
            matched = FileSystems.match([cfg.path])[0].metadata_list
        except Exception as exc:  # BeamIOError and the filesystems' own errors
            raise InputError(f"{cfg.path}: cannot list the input dataset ({exc})") from None
        files = sorted(m.path for m in matched)
        if not files:
            raise InputError(f"{cfg.path}: input dataset not found")
        return files
    files = sorted(glob.glob(cfg.path)) if any(c in cfg.path for c in "*?[") else [cfg.path]
    if not files or not all(Path(f).is_file() for f in files):
        raise InputError(f"{cfg.path}: input dataset not found")
    return files


PACKAGE_SCHEME = "pkg://"


def _packaged(path: str) -> bool:
    return path.startswith(PACKAGE_SCHEME)


def _package_file(path: str) -> Path:
    """``pkg://<package>/<file>`` -> the file inside the installed package (a real file: pip
    installs packages unpacked); one InputError when the package or the file is missing."""
    package, _, inner = path.removeprefix(PACKAGE_SCHEME).partition("/")
    try:
        root = importlib.resources.files(package)
    except ModuleNotFoundError:
        raise InputError(f"{path}: Python package '{package}' is not installed") from None
    resource = root.joinpath(*inner.split("/")) if inner else root
    if not inner or not resource.is_file():
        raise InputError(f"{path}: no such file in package '{package}'")
    return Path(str(resource))


def _remote(path: str) -> bool:
    return "://" in path and not _packaged(path)


def _open(path: str) -> BinaryIO:
    if _packaged(path):
        return open(_package_file(path), "rb")
    if _remote(path):
        return FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)
    return open(path, "rb")


def _is_parquet(path: str) -> bool:
    return path.endswith(".parquet")


def _is_json_array(path: str) -> bool:
    return path.endswith(".json")


def _where(path: str, number: int) -> str:
    """How an error names a row: line of a JSON Lines file, row of Parquet, item of an array."""
    if _is_parquet(path):
        return f"{path} row {number}"
    if _is_json_array(path):
        return f"{path} item {number}"
    return f"{path}:{number}"


def iter_rows(path: str, limit: int | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """(1-based line, row or item number, row) for every row, or for the first `limit` rows
    (the rest of the file is never read); raises InputError on a bad row."""
    rows = _iter_all_rows(path)
    if limit is None:
        yield from rows
        return
    for _, item in zip(range(limit), rows, strict=False):
        yield item


def _iter_all_rows(path: str) -> Iterator[tuple[int, dict[str, Any]]]:
    if _is_json_array(path):
        with _open(path) as handle:
            yield from _json_array_rows(handle, path)
        return
    if _is_parquet(path):
        with _open(path) as handle:
            try:
                parquet = pq.ParquetFile(handle)
            except Exception as exc:  # pyarrow raises several types for a non-Parquet file
                raise InputError(f"{path}: not a readable Parquet file ({exc})") from None
            number = 0
            for batch in parquet.iter_batches(batch_size=4096):
                for row in batch.to_pylist():
                    number += 1
                    yield number, row
        return
    with _open(path) as handle:  # binary lines: split at "\n" only
        yield from iter_json_lines(handle, path, InputError)


_CHUNK = 1 << 20


def _json_array_rows(handle: BinaryIO, path: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """The objects of one top-level JSON array, decoded one at a time from a buffered stream,
    so a slice of a large file (ShareGPT's is 125 MB) costs only the bytes up to its end."""
    reader = io.TextIOWrapper(handle, encoding="utf-8")
    decoder = json.JSONDecoder()
    buf, pos, eof = "", 0, False

    def fill() -> None:
        nonlocal buf, pos, eof
        try:
            chunk = reader.read(_CHUNK)
        except UnicodeDecodeError as exc:
            raise InputError(f"{path}: not valid UTF-8 ({exc.reason})") from None
        eof = not chunk
        buf, pos = buf[pos:] + chunk, 0

    def next_char() -> str:
        """The next non-blank character (not consumed); '' at the end of the file."""
        nonlocal pos
        while True:
            while pos < len(buf) and buf[pos] in " \t\r\n":
                pos += 1
            if pos < len(buf):
                return buf[pos]
            if eof:
                return ""
            fill()

    if next_char() != "[":
        raise InputError(f"{path}: expected a JSON array of rows")
    pos += 1
    if next_char() == "]":
        return
    number = 0
    while True:
        number += 1
        next_char()  # raw_decode does not skip blanks
        while True:  # an item may span several chunks: decode again once more text is in
            try:
                row, end = decoder.raw_decode(buf, pos)
            except json.JSONDecodeError as exc:
                if eof:
                    raise InputError(f"{_where(path, number)}: malformed JSON ({exc.msg})"
                                     ) from None
                fill()
                continue
            if end < len(buf) or eof:
                break
            fill()  # the value ends at the buffer's end: a number may go on in the next chunk
        pos = end
        if not isinstance(row, dict):
            raise InputError(f"{_where(path, number)}: expected a JSON object")
        yield number, row
        after = next_char()
        if after == "]":
            return
        if after != ",":
            raise InputError(f"{_where(path, number + 1)}: malformed JSON (expected ',' or "
                             f"']' after item {number})")
        pos += 1


def _field(row: dict[str, Any], name: str, where: str) -> Any:
    """`row[name]`, or a dotted path into nested rows when no key has the whole name:
    `instances.0.output` is the first instance's output (Self-Instruct's seed file keeps its
    inputs and outputs there)."""
    if name in row:
        return row[name]
    value: Any = row
    for part in name.split(".") if "." in name else (name,):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            raise InputError(f"{where}: field '{name}' is missing")
    return value


def _text(row: dict[str, Any], name: str | None, where: str) -> str:
    if name is None:
        return ""
    value = _field(row, name, where)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InputError(f"{where}: field '{name}' must be a string, got "
                         f"{type(value).__name__}")
    return value


def to_record(row: dict[str, Any], cfg: InputConfig, path: str, file_index: int,
              number: int) -> InstructionRecord:
    where = _where(path, number)
    conversation = None
    if cfg.messages_field:  # multi-turn: the first exchange is the row's single-turn view
        messages = read_messages(row, cfg.messages_field, where)
        conversation = canonical(messages)
        (instruction, out), inp = first_exchange(messages), ""
    else:
        instruction = _text(row, cfg.instruction_field, where)
        inp = _text(row, cfg.input_field, where)
        out = _text(row, cfg.output_field, where)
    if cfg.id_field:
        record_id = _text(row, cfg.id_field, where)
    else:
        record_id = stable_id(RECIPE, Path(path).name, number, instruction, inp, out)
    order_value = None
    if cfg.order_by:
        value = row.get(cfg.order_by)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InputError(f"{where}: field '{cfg.order_by}' (order_by) must be a number")
        order_value = float(value)
    return InstructionRecord(
        id=record_id, content_hash=content_hash(*([conversation] if conversation else
                                                  [instruction, inp, out])), recipe=RECIPE,
        stage="input", round=0, instruction=instruction, input=inp, output=out,
        origin=f"external_{Path(path).stem}", task_id=record_id, slot=file_index,
        position=number, order_value=order_value, conversation=conversation,
    )


def validate(cfg: InputConfig) -> int:
    """Read every row once; return the row count or raise the first InputError."""
    rows = 0
    seen: set[str] = set()
    for file_index, path in enumerate(input_files(cfg)):
        for number, row in iter_rows(path, cfg.max_rows_per_file):
            record = to_record(row, cfg, path, file_index, number)
            if cfg.id_field and record.id in seen:
                raise InputError(f"{path}:{number}: field '{cfg.id_field}' repeats "
                                 f"{record.id!r}")
            seen.add(record.id)
            rows += 1
    if rows == 0:
        raise InputError(f"{cfg.path}: the input dataset has no rows")
    return rows


class ReadDataset(beam.PTransform):
    """Validated files -> InstructionRecords (one worker per file, streaming)."""

    def __init__(self, cfg: InputConfig) -> None:
        super().__init__()
        self._cfg = cfg

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        cfg = self._cfg
        files = list(enumerate(input_files(cfg)))

        def read(item: tuple[int, str]) -> Iterator[InstructionRecord]:
            index, path = item
            for number, row in iter_rows(path, cfg.max_rows_per_file):
                yield to_record(row, cfg, path, index, number)

        return (pbegin | "Files" >> beam.Create(files) | "Spread" >> beam.Reshuffle()
                | "Rows" >> beam.FlatMap(read))


def input_order(record: InstructionRecord) -> tuple[float, int, int]:
    """The greedy filters' order: `order_by` value if given, then file and row."""
    return (record.order_value if record.order_value is not None else 0.0,
            record.slot or 0, record.position or 0)


# --- rows of another Beam pipeline ---------------------------------------------------------------

class Converted(NamedTuple):
    records: beam.PCollection  # InstructionRecord
    failed: beam.PCollection  # FailureRecord: a row that is not a record, or repeats an id


def _row_key(row: Any, cfg: InputConfig) -> tuple[str, str]:
    """(grouping key, canonical JSON): rows meet by their id field, else by their content."""
    canonical_row = json.dumps(row, sort_keys=True, ensure_ascii=False, default=str)
    if cfg.id_field and isinstance(row, dict) and isinstance(row.get(cfg.id_field), str):
        return f"id:{row[cfg.id_field]}", canonical_row
    return f"row:{stable_id(canonical_row)}", canonical_row


def _convert_group(element: tuple[str, Iterable[tuple[str, Any]]], cfg: InputConfig,
                   stage: str) -> Iterator[Any]:
    """One key's rows -> records; equal rows are numbered, a repeated id is a dead letter."""
    key, rows = element
    for occurrence, (canonical_row, row) in enumerate(sorted(rows, key=lambda r: r[0])):
        count(stage, "in")
        try:
            if not isinstance(row, dict):
                raise InputError(f"expected a dict row, got {type(row).__name__}")
            if cfg.id_field and occurrence:
                raise InputError(f"field '{cfg.id_field}' repeats {row.get(cfg.id_field)!r}")
            if cfg.input_field and cfg.input_field not in row:  # Alpaca rows may omit it
                row = {**row, cfg.input_field: ""}
            record = to_record(row, cfg, cfg.path, 0, occurrence)
            if not cfg.id_field:  # no file row numbers here: the id comes from the whole row
                rid = stable_id(RECIPE, cfg.path, canonical_row, occurrence)
                record = replace(record, id=rid, task_id=rid, slot=None, position=None)
        except InputError as exc:
            count(stage, "failed")
            problem = str(exc).removeprefix(f"{cfg.path}:{occurrence}: ")
            yield beam.pvalue.TaggedOutput(FAILED, FailureRecord(
                id=stable_id(RECIPE, stage, key, occurrence), recipe=RECIPE, stage=stage,
                round=0, subject_id=key, error_class="InputError",
                message=f"{cfg.path}: {problem} in row {canonical_row[:200]}", attempts=1))
            continue
        count(stage, "ok")
        yield record


class ToInstructionRecords(beam.PTransform):
    """PCollection[dict] -> ``Converted(records, failed)``: any pipeline's rows as records.

    Field names work as in a filter run's ``input`` config. Without ``id_field`` a record's id
    is derived from its content (equal rows are told apart by an occurrence number), so the
    ids, and the filters' default order, do not depend on bundle boundaries or arrival order.
    A missing ``input_field`` counts as empty; a row missing another field, with a non-string
    field, or repeating an id is a ``FailureRecord`` whose message quotes the row.
    """

    def __init__(self, *, source: str = "rows", instruction_field: str = "instruction",
                 input_field: str | None = "input", output_field: str | None = "output",
                 id_field: str | None = None, order_by: str | None = None,
                 messages_field: str | None = None, stage: str = "input") -> None:
        super().__init__()
        self._cfg = InputConfig(path=source, instruction_field=instruction_field,
                                input_field=input_field, output_field=output_field,
                                id_field=id_field, order_by=order_by,
                                messages_field=messages_field)
        self._stage = stage

    def expand(self, rows: beam.PCollection) -> Converted:
        cfg = self._cfg

        def keyed(row: Any) -> tuple[str, tuple[str, Any]]:
            key, canonical_row = _row_key(row, cfg)
            return key, (canonical_row, row)

        out = (rows
               | "Key" >> beam.Map(keyed)
               | "Group" >> beam.GroupByKey()
               | "Convert" >> beam.FlatMap(_convert_group, cfg, self._stage).with_outputs(
                   FAILED, main="records"))
        return Converted(out.records, out[FAILED])
