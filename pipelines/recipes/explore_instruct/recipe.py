"""Explore-Instruct's registry entry: how it is configured, validated, built and reported."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipelines.generators.backends import resolve_identity
from pipelines.outputs import targets
from pipelines.outputs.info import CONFIG_ROOT
from pipelines.recipes.base import Inputs, Recipe
from pipelines.recipes.explore_instruct.build import build
from pipelines.recipes.explore_instruct.config import ExploreInstructConfig, ExploreInstructRun
from pipelines.recipes.explore_instruct.steps import initial_tree
from pipelines.recipes.explore_instruct.targets import EXPLORE, explore_target
from pipelines.settings import FieldError


def validate(cfg: ExploreInstructRun) -> Inputs:
    rows = len(initial_tree(cfg))  # reads and checks a given tree_dir
    return Inputs(rows, resolve_identity(cfg.generator))


def check(cfg: ExploreInstructRun) -> None:
    ei = cfg.explore_instruct
    if not (ei.root_task or ei.tree_dir):
        raise FieldError("explore_instruct",
                         "needs root_task (with root_examples) or tree_dir")


def run_targets(cfg: ExploreInstructRun, stages: Mapping[str, Any],
                counters: Mapping[str, Mapping[str, int]]) -> dict[str, targets.Target]:
    return {EXPLORE: explore_target(cfg, stages)}


def seed_source(config: Mapping[str, Any]) -> str:
    source = config["explore_instruct"].get("tree_dir")
    return f"the task tree in {source}: user-supplied, check its licence" if source else \
        CONFIG_ROOT


RECIPE = Recipe(
    name="explore_instruct",
    paper="Explore-Instruct (Wan et al., EMNLP 2023, arXiv:2310.09168)",
    config=ExploreInstructConfig, validate=validate, build=build, check=check,
    targets=run_targets, seed_source=seed_source)
