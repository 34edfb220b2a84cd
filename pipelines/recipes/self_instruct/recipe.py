"""Self-Instruct's registry entry: how it is configured, validated, built and reported."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipelines.generators.backends import resolve_identity
from pipelines.outputs import targets
from pipelines.recipes.base import Inputs, Recipe
from pipelines.recipes.self_instruct.build import build
from pipelines.recipes.self_instruct.config import SelfInstructConfig, SelfInstructRun
from pipelines.recipes.self_instruct.seeds import read_seed_tasks


def validate(cfg: SelfInstructRun) -> Inputs:
    seeds = read_seed_tasks(cfg.seed_tasks)
    return Inputs(len(seeds), resolve_identity(cfg.generator), seeds)


def run_targets(cfg: SelfInstructRun, stages: Mapping[str, Any],
                counters: Mapping[str, Mapping[str, int]]) -> dict[str, targets.Target]:
    si = cfg.self_instruct
    got = targets.target_counters(counters).get(targets.SELF_INSTRUCT, {})
    return {targets.SELF_INSTRUCT: targets.bootstrap_target(si.num_instructions,
                                                            si.prompt_budget, got)}


RECIPE = Recipe(
    name="self_instruct",
    paper="Self-Instruct (Wang et al., ACL 2023, arXiv:2212.10560)",
    config=SelfInstructConfig, validate=validate, build=build, targets=run_targets)
