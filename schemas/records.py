"""Record dataclasses and their Arrow schemas: the one source of truth for every shard we write.

Each dataclass below has a matching `pyarrow.Schema` built from the same field table, so the
Parquet files, the in-memory records and the tests can never drift apart (a parity test checks
it). New features add nullable fields at the end and never rename or drop one; the
`SCHEMA_VERSION` travels in every file's metadata and in the manifest.

One union schema serves every recipe (a recipe leaves the columns it does not use null) on
purpose: one run's output is the next run's input, shards of any runs concatenate without type
reconciliation, and every Beam step and Parquet writer has one fixed type on Dataflow.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, TypeVar

import pyarrow as pa

SCHEMA_VERSION: Final = "1.0"

_STRING = pa.string()
_INT = pa.int64()
_FLOAT = pa.float64()
_BOOL = pa.bool_()
_MESSAGES = pa.list_(pa.field("element", pa.struct([("role", pa.string()),
                                                    ("content", pa.string())])))
# tuple[str, ...] on the dataclass; the item is named "element" as Parquet stores it, so that
# a written file's schema equals the declared one.
_STRINGS = pa.list_(pa.field("element", pa.string()))
# tuple[tuple[str, float], ...]: named scores as a list of (name, value) structs, not an Arrow
# map, which Hugging Face `datasets` cannot load.
_SCORES = pa.list_(pa.field("element", pa.struct([("name", pa.string()),
                                                  ("value", pa.float64())])))


@dataclass(frozen=True, slots=True)
class Message:
    """One turn of a multi-turn row: `role` is "system", "user" or "assistant"."""

    role: str
    content: str


@dataclass(frozen=True, slots=True)
class InstructionRecord:
    """One instruction (optionally with an instance: input and output) and its provenance.

    `id` is unique per generated row, even when a small model repeats itself; `content_hash`
    is the same for equal normalized text and is what deduplication keys on.
    """

    id: str
    content_hash: str
    recipe: str
    stage: str
    round: int
    instruction: str
    input: str = ""
    output: str = ""
    origin: str = "machine"  # "seed" | "machine"
    task_id: str = ""  # the instruction this row belongs to (its own id for instruction rows)
    is_classification: bool | None = None
    generator: str | None = None  # model id that produced the text
    generator_revision: str | None = None
    prompt_ref: str | None = None  # "<algorithm>/<name>@v<N>"
    sampling: str | None = None  # canonical JSON of the sampling parameters
    seed: int | None = None  # per-request seed sent to the generator
    request_id: str | None = None
    finish_reason: str | None = None
    rouge_l_max: float | None = None  # novelty score against the pool
    most_similar: str | None = None  # the pool text that gave rouge_l_max
    slot: int | None = None  # which prompt produced it (bootstrap: its index in the lane)
    position: int | None = None  # its place in that response
    near_dup_cluster: str | None = None  # MinHash cluster id (the smallest id in the cluster)
    near_dup_survivor: str | None = None  # the record kept for that cluster
    near_dup_jaccard: float | None = None  # estimated Jaccard to the survivor
    order_value: float | None = None  # an input dataset's order_by column, if any
    node_id: str | None = None  # Explore-Instruct: the tree node (task) this row belongs to
    node_path: str | None = None  # that node's task names from the root, "/"-joined
    instance_type: str | None = None  # Ensemble-Instruct: "input_output" | "output_only"
    ensemble_path: str | None = None  # which consensus step kept or dropped the row
    ensemble: str | None = None  # JSON: every candidate output and pairwise ROUGE-L
    conversation: str | None = None  # JSON [{role, content}, ...] of a multi-turn input row
    tags_open: tuple[str, ...] | None = None  # #InsTag: the tagger's tags (all user turns)
    tags_raw: str | None = None  # JSON list of the tagger's raw answers, one per user turn
    tags: tuple[str, ...] | None = None  # the normalized tags
    tag_count: int | None = None  # len(tags): Cf-D's complexity
    cfd_pass: int | None = None  # the Cf-D pass that selected the row (1-based)
    cfd_rank: int | None = None  # its place in the selection order (0-based)
    # Atomic tasks (EcomGPT): a row derived from existing rows says from which and how.
    derived_from: tuple[str, ...] | None = None  # the source row id(s), anchor first
    transform: str | None = None  # "<name>@v<N>", e.g. "reversal@v1"
    # Quality scoring (issue 17): named scores the QualityScorer family measured, in the
    # order they were added ((name, value) pairs), and the LLM judge's one-line rationale.
    scores: tuple[tuple[str, float], ...] | None = None
    judge_rationale: str | None = None
    # UltraChat: a multi-turn dialogue (instruction = its opening line, output = first reply).
    messages: tuple[Message, ...] | None = None  # every turn, user first
    sector: str | None = None  # "world" | "writing" | "materials"
    opening_id: str | None = None  # the opening line's row id (a dialogue's lineage root)
    topic: str | None = None  # what the opening came from: topic path, entity or material type
    passage_id: str | None = None  # sector "materials": the input row the passage came from
    rounds: int | None = None  # complete user + assistant rounds
    dialogue_end: str | None = None  # "rounds_reached" | "context_full" | why it stopped
    turn_generators: tuple[str, ...] | None = None  # per message: the model that wrote it
    turn_finish_reasons: tuple[str, ...] | None = None  # per message ("given": not generated)
    persona: str | None = None  # the simulated user's personality (drawn per dialogue)
    content_type: str | None = None  # sector 3: the passage's content type (keyword routing)
    # streaming bootstrap (issue 15): the lane whose loop produced the row (slot = its prompt)
    lane: int | None = None
    # EcomGPT's instruction format (issue 24): what a transform knows of its task's answer.
    candidate_labels: tuple[str, ...] | None = None  # the answers allowed, e.g. ("A", "B")
    output_constraint: str | None = None  # what the output must be, in one sentence

    def texts(self) -> tuple[tuple[str, str], ...]:
        """What a filter reads, each text with the name a rejection gives it.

        A dialogue (`messages`) is its turns, "turn 3 (user)" and so on: they are its one
        source of truth, and `instruction`/`input`/`output` only repeat its opening and
        first reply. Any other row is its instruction, input and output.
        """
        if self.messages:
            return tuple((turn_name(i, m.role), m.content) for i, m in enumerate(self.messages))
        return (("instruction", self.instruction), ("input", self.input),
                ("output", self.output))


def exchanges(record: InstructionRecord) -> tuple[tuple[str, str, str, str], ...]:
    """What a scorer rates, as (name, request, context, reply): one per assistant reply of a
    dialogue (the user turn before it, the conversation before that as plain text), or the
    row itself (`output`, instruction, input, output)."""
    if not record.messages:
        return (("output", record.instruction, record.input, record.output),)
    out = []
    for i, m in enumerate(record.messages):
        if m.role != "assistant":
            continue
        asked = record.messages[i - 1].content if i and record.messages[i - 1].role == "user" \
            else ""
        history = record.messages[:i - 1] if asked else record.messages[:i]
        context = "\n".join(f"{h.role.capitalize()}: {h.content}" for h in history)
        out.append((turn_name(i, "assistant"), asked,
                    f"Conversation so far:\n{context}" if context else "", m.content))
    return tuple(out)


def turn_name(index: int, role: str) -> str:
    """How a rejection names a dialogue's turn: 1-based, with its role."""
    return f"turn {index + 1} ({role})"


@dataclass(frozen=True, slots=True)
class RejectedRecord:
    """A produced record that a filter dropped, with the rule, reason code and deciding score."""

    record: InstructionRecord
    filter_stage: str
    filter_name: str
    reason: str
    score: float | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class FailureRecord:
    """A dead letter: an input unit (e.g. one generator request) that could not be processed."""

    id: str
    recipe: str
    stage: str
    round: int
    subject_id: str  # the record or request the unit was about
    error_class: str
    message: str
    attempts: int
    generator: str | None = None
    prompt_ref: str | None = None
    prompt_sha256: str | None = None
    # UltraChat: JSON [{role, content}] of the dialogue up to the turn that failed.
    partial: str | None = None


_RECORD_TYPES: Final[dict[str, pa.DataType]] = {
    "id": _STRING,
    "content_hash": _STRING,
    "recipe": _STRING,
    "stage": _STRING,
    "round": _INT,
    "instruction": _STRING,
    "input": _STRING,
    "output": _STRING,
    "origin": _STRING,
    "task_id": _STRING,
    "is_classification": _BOOL,
    "generator": _STRING,
    "generator_revision": _STRING,
    "prompt_ref": _STRING,
    "sampling": _STRING,
    "seed": _INT,
    "request_id": _STRING,
    "finish_reason": _STRING,
    "rouge_l_max": _FLOAT,
    "most_similar": _STRING,
    "slot": _INT,
    "position": _INT,
    "near_dup_cluster": _STRING,
    "near_dup_survivor": _STRING,
    "near_dup_jaccard": _FLOAT,
    "order_value": _FLOAT,
    "node_id": _STRING,
    "node_path": _STRING,
    "instance_type": _STRING,
    "ensemble_path": _STRING,
    "ensemble": _STRING,
    "conversation": _STRING,
    "tags_open": _STRINGS,
    "tags_raw": _STRING,
    "tags": _STRINGS,
    "tag_count": _INT,
    "cfd_pass": _INT,
    "cfd_rank": _INT,
    # Atomic tasks (EcomGPT)
    "derived_from": _STRINGS,
    "transform": _STRING,
    "scores": _SCORES,
    "judge_rationale": _STRING,
    "messages": _MESSAGES,
    "sector": _STRING,
    "opening_id": _STRING,
    "topic": _STRING,
    "passage_id": _STRING,
    "rounds": _INT,
    "dialogue_end": _STRING,
    "turn_generators": _STRINGS,
    "turn_finish_reasons": _STRINGS,
    "persona": _STRING,
    "content_type": _STRING,
    "lane": _INT,
    "candidate_labels": _STRINGS,
    "output_constraint": _STRING,
}
_REJECTION_TYPES: Final[dict[str, pa.DataType]] = {
    "filter_stage": _STRING,
    "filter_name": _STRING,
    "reason": _STRING,
    "score": _FLOAT,
    "detail": _STRING,
}
_FAILURE_TYPES: Final[dict[str, pa.DataType]] = {
    "id": _STRING,
    "recipe": _STRING,
    "stage": _STRING,
    "round": _INT,
    "subject_id": _STRING,
    "error_class": _STRING,
    "message": _STRING,
    "attempts": _INT,
    "generator": _STRING,
    "prompt_ref": _STRING,
    "prompt_sha256": _STRING,
    "partial": _STRING,
}
_NOT_NULL: Final = frozenset({"id", "content_hash", "recipe", "stage", "round", "instruction"})


def _schema(types: Mapping[str, pa.DataType], kind: str) -> pa.Schema:
    fields = [pa.field(name, typ, nullable=name not in _NOT_NULL) for name, typ in types.items()]
    meta = {"instructbeam.schema_version": SCHEMA_VERSION, "instructbeam.kind": kind}
    return pa.schema(fields, metadata=meta)


RECORD_SCHEMA: Final = _schema(_RECORD_TYPES, "record")
REJECTED_SCHEMA: Final = _schema({**_RECORD_TYPES, **_REJECTION_TYPES}, "rejected")
FAILURE_SCHEMA: Final = _schema(_FAILURE_TYPES, "failure")

ARROW_TYPES: Final = {InstructionRecord: _RECORD_TYPES, FailureRecord: _FAILURE_TYPES}


def to_row(item: InstructionRecord | RejectedRecord | FailureRecord) -> dict[str, object]:
    """Flatten a record into a dict keyed like its Arrow schema."""
    if isinstance(item, RejectedRecord):
        row = dataclasses.asdict(item.record)
        row.update(
            filter_stage=item.filter_stage,
            filter_name=item.filter_name,
            reason=item.reason,
            score=item.score,
            detail=item.detail,
        )
        return row
    return dataclasses.asdict(item)


T = TypeVar("T", InstructionRecord, FailureRecord)


def from_row(cls: type[T], row: Mapping[str, object]) -> T:
    """Rebuild a record from a row, ignoring columns a later schema version added."""
    names = {f.name for f in dataclasses.fields(cls)}
    # Arrow gives lists back, and structs as dicts; the frozen dataclasses hold tuples.
    return cls(**{k: _from_list(k, v) if isinstance(v, list) else v  # type: ignore[arg-type]
                  for k, v in row.items() if k in names})


def _from_list(name: str, value: list) -> tuple:
    """Arrow's lists as tuples: messages as Messages, other structs (named scores) as tuples."""
    if name == "messages":
        return tuple(m if isinstance(m, Message) else Message(m["role"], m["content"])
                     for m in value)
    return tuple(tuple(x.values()) if isinstance(x, dict) else x for x in value)


def rejected_from_row(row: Mapping[str, object]) -> RejectedRecord:
    """Rebuild a rejection (record plus rule) from a flat rejected-shard row."""
    return RejectedRecord(
        record=from_row(InstructionRecord, row),
        filter_stage=str(row["filter_stage"]),
        filter_name=str(row["filter_name"]),
        reason=str(row["reason"]),
        score=row.get("score"),  # type: ignore[arg-type]
        detail=str(row.get("detail") or ""),
    )


_NON_ALNUM = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    """Whitespace-collapsed, lower-cased text: what counts as 'the same content'."""
    return _NON_ALNUM.sub(" ", text).strip().lower()


def content_hash(*parts: str) -> str:
    """Hash of the normalized text fields; equal content gives equal hashes across runs."""
    joined = "\x1f".join(normalize_text(p) for p in parts)
    return hashlib.sha256(joined.encode("utf-8")).hexdigest()[:32]


def stable_id(*parts: object) -> str:
    """Deterministic id from (recipe, stage, round, slot, position, text, ...)."""
    payload = json.dumps([str(p) for p in parts], ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:24]
