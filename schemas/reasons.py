"""Reason codes: each names the failure that made a filter drop a record.

Codes are stable strings written to the rejected shards and the manifest; add new ones, never
rename old ones.
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    # Whole generator responses.
    RESPONSE_TRUNCATED = "response_truncated"  # finish_reason == "length": Self-Instruct drops all
    EMPTY_RESPONSE = "empty_response"
    UNPARSABLE_RESPONSE = "unparsable_response"
    # Self-Instruct instruction heuristics, in the paper code's order.
    EMPTY_INSTRUCTION = "empty_instruction"
    TOO_SHORT = "too_short"
    TOO_LONG = "too_long"
    BLACKLISTED_KEYWORD = "blacklisted_keyword"
    STARTS_WITH_WRITE_A_PROGRAM = "starts_with_write_a_program"
    STARTS_WITH_PUNCTUATION = "starts_with_punctuation"
    STARTS_WITH_NON_ASCII = "starts_with_non_ascii"
    # Novelty (ROUGE-L against the pool) and near duplicates (MinHash LSH).
    NOT_NOVEL = "not_novel"
    NEAR_DUPLICATE = "near_duplicate"
    # Self-Instruct instance filters.
    INPUT_EQUALS_OUTPUT = "input_equals_output"
    EMPTY_OUTPUT = "empty_output"
    FIELD_ENDS_WITH_COLON = "field_ends_with_colon"
    CONFLICTING_OUTPUTS = "conflicting_outputs"  # same non-empty input, different outputs
    DUPLICATE_INSTANCE = "duplicate_instance"
    OVER_INSTANCE_LIMIT = "over_instance_limit"
    LAST_INSTANCE_TRUNCATED = "last_instance_truncated"
    NO_INSTANCES = "no_instances"
    # Rule filters for any data (EcomGPT-style cleaning).
    OVERLONG_INSTANCE = "overlong_instance"
    ILLEGAL_WORD = "illegal_word"
    # A task-level drop propagated to its rows.
    TASK_FAILED_UPSTREAM = "task_failed_upstream"
