"""Explore-Instruct's target (manifest `targets`): the tree sample's size, and why a sample
came out smaller (pipelines/outputs/targets.py), read from the stage table."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipelines.outputs.targets import Target, rejected, stage, target
from pipelines.recipes.explore_instruct.config import ExploreInstructRun

EXPLORE = "explore_instruct.sample_size"


def explore_target(cfg: ExploreInstructRun, stages: Mapping[str, Any]) -> Target:
    """The paper's tree sample: per-node allocation over the filtered examples, topped up
    from the root."""
    ei = cfg.explore_instruct
    wanted = ei.sample_size
    sample = stage(stages, "explore_sample")
    got, pool = sample.get("kept", 0), sample.get("produced", 0)
    beyond = rejected(stages, "explore_sample", "beyond_sample_depth")
    pruned = rejected(stages, "explore_sample", "pruned_task")
    eligible = pool - beyond - pruned
    if got >= wanted:
        return target(wanted, got, f"drawn from {eligible} eligible examples")
    excluded = [f"{n} {what}" for n, what in (
        (rejected(stages, "explore_filter", "not_novel"), "not novel in their node"),
        (rejected(stages, "explore_filter", "over_instance_limit"), "over max_example_num"),
        (beyond, f"deeper than sample_max_depth={ei.sample_max_depth}"),
        (pruned, "from pruned nodes")) if n]
    detail = f" ({', '.join(excluded)})" if excluded else ""
    if eligible < wanted:
        return target(wanted, got, f"pool exhausted: only {eligible} examples eligible for "
                                   f"the sample{detail}")
    return target(wanted, got, f"the per-node allocation drew {got} of {eligible} eligible "
                               "examples and the root had none left to top up with")
