"""The atomic-task recipe's glue as plain functions: its config section as the transforms'
rules, and the per-transform accounting read back from a manifest's stage table."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from filters.atomic_tasks import RecombinationRule, ReversalRule, SimplifyRule
from pipelines.recipes.atomic_tasks.config import AtomicTasksConfig
from pipelines.transforms.atomic_tasks import (
    STAGE_RECOMBINATION,
    STAGE_REVERSAL,
    STAGE_SIMPLIFICATION,
    SimplifySettings,
)

STAGES = {"reversal": STAGE_REVERSAL, "simplification": STAGE_SIMPLIFICATION,
          "recombination": STAGE_RECOMBINATION}


def reversal_rule(cfg: AtomicTasksConfig) -> ReversalRule:
    r = cfg.reversal
    return ReversalRule(min_output_words=r.min_output_words,
                        max_request_words=r.max_request_words,
                        min_length_ratio=r.min_length_ratio)


def simplify_settings(cfg: AtomicTasksConfig) -> SimplifySettings:
    s = cfg.simplification
    return SimplifySettings(
        rule=SimplifyRule(min_parts=s.min_parts, max_source_chars=s.max_source_chars,
                          select_all=s.select == "all"),
        max_subtasks=s.max_subtasks, max_subtask_chars=s.max_subtask_chars,
        grounded=s.grounded, min_request_overlap=s.min_request_overlap, api=s.api,
        structured_output=s.structured_output, sampling=s.sampling)


def recombination_rule(cfg: AtomicTasksConfig, seed: int) -> RecombinationRule:
    r = cfg.recombination
    return RecombinationRule(options=r.options, group_size=r.group_size,
                             max_option_chars=r.max_option_chars,
                             max_distractor_rouge_l=r.max_distractor_rouge_l, seed=seed)


def transform_accounting(stages: Mapping[str, Mapping[str, Any]], rows_in: int,
                         prefix: str = "") -> dict[str, dict[str, Any]]:
    """Per transform that ran, from a manifest's `stages`: how its `rows_in` source rows
    left (the source of derived rows, rejected, failed) and whether that adds up
    (`holds`: in = derived_from + rejected + failed). `rows` counts the rows made (a source
    row may give several sub-tasks)."""
    out: dict[str, dict[str, Any]] = {}
    for name, base in STAGES.items():
        row = stages.get(prefix + base)
        if row is None:
            continue
        rejected = sum(row.get("rejected", {}).values())
        failed = sum(stages.get(f"{prefix}{base}{suffix}", {}).get("failed", 0)
                     for suffix in ("_generate", "_parse"))
        rows = stages.get(f"{prefix}{base}_subtasks", {}).get("kept", row["kept"])
        derived = row["kept"]
        entry = {"in": rows_in, "derived_from": derived,
                 "rejected": rejected, "failed": failed, "rows": rows}
        entry["holds"] = entry["in"] == derived + rejected + failed
        out[name] = entry
    return out
