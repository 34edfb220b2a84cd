"""Record types, their Arrow schemas and reason codes: shared by every stage and writer."""

from schemas.reasons import Reason
from schemas.records import (
    FAILURE_SCHEMA,
    RECORD_SCHEMA,
    REJECTED_SCHEMA,
    SCHEMA_VERSION,
    FailureRecord,
    InstructionRecord,
    Message,
    RejectedRecord,
    content_hash,
    exchanges,
    from_row,
    rejected_from_row,
    stable_id,
    to_row,
    turn_name,
)

__all__ = [
    "FAILURE_SCHEMA",
    "RECORD_SCHEMA",
    "REJECTED_SCHEMA",
    "SCHEMA_VERSION",
    "FailureRecord",
    "InstructionRecord",
    "Message",
    "Reason",
    "RejectedRecord",
    "content_hash",
    "exchanges",
    "from_row",
    "rejected_from_row",
    "stable_id",
    "to_row",
    "turn_name",
]
