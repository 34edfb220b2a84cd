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
    CONVERSATION_FRAGMENT = "conversation_fragment"  # opens with the assistant: mid-chat piece
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
    # Ensemble-Instruct: valid-format parsing of instances, and output ensembling.
    INVALID_FORMAT = "invalid_format"  # first block lacks the "input:"/"output:" lines
    ENSEMBLE_DISAGREEMENT = "ensemble_disagreement"  # min pairwise ROUGE-L <= 0.01
    OUTPUT_ECHOES_INSTRUCTION = "output_echoes_instruction"  # the answer is a piece of the task
    # Explore-Instruct: extension responses, tree placement, examples, prune and sampling.
    INCOMPLETE_SUBTASK = "incomplete_subtask"  # a "New subtask:" block without Reason/Examples
    INVALID_TASK_NAME = "invalid_task_name"  # the name has no [A-Za-z0-9] character
    BREADTH_CAP = "breadth_cap"  # the node already has max_child_num children
    DUPLICATE_TASK_NAME = "duplicate_task_name"  # the name and its _0.._9 suffixes are taken
    SIMILAR_TASK_NAME = "similar_task_name"  # pruning during extension: name ROUGE-L > threshold
    MALFORMED_EXAMPLE = "malformed_example"  # no Instruction/Input/Output split
    WRAPPED_INPUT = "wrapped_input"  # input is a "<...>" or "(...)" placeholder
    PRUNED_TASK = "pruned_task"  # the node was pruned and pruned nodes are excluded
    BEYOND_SAMPLE_DEPTH = "beyond_sample_depth"  # node deeper than sample_max_depth
    NOT_SAMPLED = "not_sampled"  # not drawn by the allocation, or cut by the sample size
    SEED_EXAMPLE = "seed_example"  # a given (config or loaded tree) example: input, not output
    # #InsTag: Cf-D never selects a query without tags (after normalization).
    NO_TAGS = "no_tags"
    # Atomic tasks (EcomGPT): why a row yields no derived task.
    OUTPUT_TOO_SHORT_TO_REVERSE = "output_too_short_to_reverse"  # a label cannot name its request
    REQUEST_TOO_LONG_TO_REVERSE = "request_too_long_to_reverse"  # pasted material: unrecoverable
    LOSSY_REVERSAL = "lossy_reversal"  # the output drops most of the input (e.g. a summary)
    SINGLE_PART_TASK = "single_part_task"  # nothing to split
    NOT_DECOMPOSABLE = "not_decomposable"  # the generator found fewer than two sub-tasks
    NO_USABLE_SUBTASKS = "no_usable_subtasks"  # every sub-task was rejected
    UNGROUNDED_SUBTASK = "ungrounded_subtask"  # its answer is not taken from the source answer
    OFF_REQUEST_SUBTASK = "off_request_subtask"  # its request is not part of the source request
    SAME_AS_SOURCE = "same_as_source"  # the "sub-task" repeats the whole request
    OPTION_TOO_LONG = "option_too_long"  # too long to be one choice among several
    TOO_FEW_OPTIONS = "too_few_options"  # its group has too few distinct other answers
    # Score filters (score, then threshold): the row's named score is out of the window.
    SCORE_BELOW_MIN = "score_below_min"
    SCORE_ABOVE_MAX = "score_above_max"
    MISSING_SCORE = "missing_score"  # no scorer measured it (e.g. its judge request failed)
    # UltraChat: opening lines and dialogues (a dialogue is judged turn by turn).
    PASSAGE_OUT_OF_RANGE = "passage_out_of_range"  # a material's words outside the bounds
    ROLE_DRIFT = "role_drift"  # the simulated user answered like the assistant
    EMPTY_TURN = "empty_turn"
    REPEATED_TURN = "repeated_turn"  # ROUGE-L to an earlier turn above the threshold
    TURN_TRUNCATED = "turn_truncated"  # a turn stopped at max_tokens (finish_reason length)
    REFUSAL = "refusal"  # the assistant turn matches a refusal template
    SPEAKER_LABEL = "speaker_label"  # a turn holds a "User:"/"Assistant:" line: both sides
    TURN_LOOP = "turn_loop"  # a turn repeats one passage over and over (a generation loop)
    CONTEXT_EXCEEDED = "context_exceeded"  # not even the first round fits the context
