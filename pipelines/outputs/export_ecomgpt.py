"""EcomGPT's six-part instruction format, as an export format (`--format ecomgpt`).

EcomGPT (Li et al., AAAI 2024) writes every instruction sample in six parts: a task
description (the kind of task), a prompt (this instance's request), the input text, the
candidate labels (the answers allowed, when the task has a closed set), the output
constraints (what the output must look like) and the output. A row here has the prompt, the
input and the output; the atomic transforms also know the rest for what they derive
(filters/atomic_tasks.py): recombination's letters and "reply with one letter", reversal's
target field, each transform's task description. What a row does not know is left empty
("" or []), never guessed.

The format has no turns: a dialogue (more than one exchange) is refused with its id, not cut
to its first exchange without a word (export it as `sharegpt` or `openai`).
"""

from __future__ import annotations

import json
from typing import Any, Final

from filters.atomic_tasks import TASK_DESCRIPTIONS
from pipelines.errors import InputError

FIELDS: Final = ("task_description", "prompt", "input", "candidate_labels",
                 "output_constraints", "output")
COLUMNS: Final = ("transform", "candidate_labels", "output_constraint")


def _exchanges(row: dict[str, Any]) -> int:
    """How many user turns the row's stored dialogue has (1 for a single-turn row)."""
    if row.get("messages"):
        turns = [m["role"] for m in row["messages"]]
    elif row.get("conversation"):
        turns = [m["role"] for m in json.loads(row["conversation"])]
    else:
        return 1
    return sum(1 for role in turns if role == "user")


def task_description(transform: str | None) -> str:
    """The derived row's task kind ("reversal@v1" -> reversal's description), else ""."""
    return TASK_DESCRIPTIONS.get((transform or "").split("@", 1)[0], "")


def ecomgpt_item(row: dict[str, Any], with_provenance: bool = False) -> dict[str, Any]:
    """One row in EcomGPT's six parts (`meta` added with provenance)."""
    if _exchanges(row) > 1:
        raise InputError(f"row {row.get('id')!r} is a dialogue of {_exchanges(row)} "
                         "exchanges; the ecomgpt format has no turns (export it as sharegpt "
                         "or openai)")
    item: dict[str, Any] = {
        "task_description": task_description(row.get("transform")),
        "prompt": row.get("instruction") or "",
        "input": row.get("input") or "",
        "candidate_labels": list(row.get("candidate_labels") or ()),
        "output_constraints": row.get("output_constraint") or "",
        "output": row.get("output") or "",
    }
    if with_provenance:
        item["meta"] = {name: row.get(name) for name in ("id", "generator", "prompt_ref")}
    return item
