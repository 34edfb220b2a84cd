"""#InsTag's target (manifest `targets`): the size of the Cf-D subset, and why it came out
smaller (pipelines/outputs/targets.py), read from the stage table."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipelines.outputs.targets import Target, rejected, stage, target
from pipelines.recipes.instag.config import InsTagRun

INSTAG = "instag.sample_size"


def instag_target(cfg: InsTagRun, stages: Mapping[str, Any]) -> Target:
    """Cf-D's N picks from the tagged pool (queries without tags are never picked)."""
    assert cfg.instag.sample_size is not None
    wanted = cfg.instag.sample_size
    sample = stage(stages, "instag_sample")
    got, pool = sample.get("kept", 0), sample.get("produced", 0)
    no_tags = rejected(stages, "instag_sample", "no_tags")
    if got >= wanted:
        return target(wanted, got, f"picked from {pool} tagged queries")
    lost = [f"{n} {what}" for n, what in (
        (sum(rejected(stages, s) for s in ("rules", "dedup_novelty", "near_dup")),
         "dropped by the filters"),
        (rejected(stages, "instag_tag"), "with unusable tag answers"),
        (stage(stages, "instag_tag").get("failed", 0), "tag requests failed"),
        (no_tags, "without tags after normalization")) if n]
    inputs = stage(stages, "input").get("produced", 0)
    detail = f"{inputs} input rows" + (f"; {', '.join(lost)}" if lost else "")
    return target(wanted, got, f"pool exhausted: only {pool - no_tags} taggable queries "
                               f"reached Cf-D ({detail})")
