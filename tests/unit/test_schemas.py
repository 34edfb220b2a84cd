"""The dataclasses and the Arrow schemas are one definition: parity and round trips."""

from __future__ import annotations

import dataclasses

import pyarrow as pa
import pytest

from schemas import (
    FAILURE_SCHEMA,
    RECORD_SCHEMA,
    REJECTED_SCHEMA,
    SCHEMA_VERSION,
    FailureRecord,
    InstructionRecord,
    Message,
    RejectedRecord,
    content_hash,
    from_row,
    rejected_from_row,
    stable_id,
    to_row,
)

PY_TO_ARROW = {str: pa.string(), int: pa.int64(), float: pa.float64(), bool: pa.bool_()}


def _arrow_type(hint: str) -> pa.DataType:
    base = hint.replace(" | None", "")
    if base == "tuple[str, ...]":
        return pa.list_(pa.field("element", pa.string()))
    if base == "tuple[tuple[str, float], ...]":  # named scores: (name, value) structs
        return pa.list_(pa.field("element", pa.struct([("name", pa.string()),
                                                       ("value", pa.float64())])))
    if base == "tuple[Message, ...]":
        return pa.list_(pa.field("element", pa.struct([("role", pa.string()),
                                                       ("content", pa.string())])))
    return PY_TO_ARROW[{"str": str, "int": int, "float": float, "bool": bool}[base]]


@pytest.mark.parametrize(("cls", "schema"), [(InstructionRecord, RECORD_SCHEMA),
                                             (FailureRecord, FAILURE_SCHEMA)])
def test_dataclass_and_arrow_schema_agree(cls, schema):
    fields = dataclasses.fields(cls)
    assert [f.name for f in fields] == schema.names
    for f in fields:
        assert schema.field(f.name).type == _arrow_type(str(f.type)), f.name
        nullable = "None" in str(f.type)
        assert not (nullable and not schema.field(f.name).nullable), f.name


def test_rejected_schema_extends_the_record_schema():
    assert REJECTED_SCHEMA.names[: len(RECORD_SCHEMA.names)] == RECORD_SCHEMA.names
    assert REJECTED_SCHEMA.names[len(RECORD_SCHEMA.names):] == [
        "filter_stage", "filter_name", "reason", "score", "detail"]


def test_schema_version_travels_in_metadata():
    for schema in (RECORD_SCHEMA, REJECTED_SCHEMA, FAILURE_SCHEMA):
        assert schema.metadata[b"instructbeam.schema_version"] == SCHEMA_VERSION.encode()


def _record(**kw) -> InstructionRecord:
    base = dict(id="r1", content_hash=content_hash("Do x."), recipe="self_instruct",
                stage="instruction_gen", round=1, instruction="Do x.", rouge_l_max=0.5,
                is_classification=False, slot=2, position=0, tags=("a", "b"), tag_count=2,
                scores=(("llm_judge", 4.0), ("classifier", 0.25)), judge_rationale="Fine.")
    return InstructionRecord(**(base | kw))


def test_round_trips_through_arrow():
    record = _record()
    table = pa.Table.from_pylist([to_row(record)], schema=RECORD_SCHEMA)
    assert from_row(InstructionRecord, table.to_pylist()[0]) == record
    rejected = RejectedRecord(record, "novelty", "rouge_l", "not_novel", 0.8, "x")
    table = pa.Table.from_pylist([to_row(rejected)], schema=REJECTED_SCHEMA)
    assert rejected_from_row(table.to_pylist()[0]) == rejected
    failure = FailureRecord("f", "self_instruct", "clf_identify", 1, "r1", "timeout", "m", 3)
    table = pa.Table.from_pylist([to_row(failure)], schema=FAILURE_SCHEMA)
    assert from_row(FailureRecord, table.to_pylist()[0]) == failure


def test_messages_round_trip_as_a_list_of_structs():
    record = _record(messages=(Message("user", "Hi?"), Message("assistant", "Hello.")),
                     turn_generators=("given", "m"), rounds=1, sector="world")
    table = pa.Table.from_pylist([to_row(record)], schema=RECORD_SCHEMA)
    assert table.schema.field("messages").type.value_type == pa.struct(
        [("role", pa.string()), ("content", pa.string())])
    assert table.column("messages").to_pylist()[0] == [
        {"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello."}]
    assert from_row(InstructionRecord, table.to_pylist()[0]) == record


def test_ids_are_stable_and_distinct_for_repeated_text():
    a = stable_id("self_instruct", "instruction_gen", 1, 0, 0, "Same text.")
    b = stable_id("self_instruct", "instruction_gen", 1, 0, 1, "Same text.")
    assert a == stable_id("self_instruct", "instruction_gen", 1, 0, 0, "Same text.")
    assert a != b
    assert content_hash("Same  text.") == content_hash("same text.")
