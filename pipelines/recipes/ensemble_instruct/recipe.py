"""Ensemble-Instruct's registry entry: how it is configured, validated, built and reported."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipelines.generators.backends import resolve_identity
from pipelines.outputs import targets
from pipelines.recipes.base import Inputs, Recipe, main_generator
from pipelines.recipes.ensemble_instruct.build import build
from pipelines.recipes.ensemble_instruct.config import EnsembleInstructConfig, EnsembleInstructRun
from pipelines.recipes.self_instruct.seeds import read_seed_tasks
from pipelines.settings import FieldError, GeneratorConfig


def validate(cfg: EnsembleInstructRun) -> Inputs:
    seeds = read_seed_tasks(cfg.seed_tasks)
    identity = resolve_identity(cfg.generator)
    for extra in cfg.ensemble_instruct.extra_generators:
        resolve_identity(extra.generator)  # every extra model must resolve before writing
    return Inputs(len(seeds), identity, seeds)


def check(cfg: EnsembleInstructRun) -> None:
    if len(cfg.ensemble_instruct.extra_generators) < 2:
        raise FieldError("ensemble_instruct",
                         "needs extra_generators: at least 2 other models answer each instance")


def generators(cfg: EnsembleInstructRun) -> list[tuple[str, GeneratorConfig]]:
    return [*main_generator(cfg), *((f"extra generator {extra.generator.model}", extra.generator)
                                    for extra in cfg.ensemble_instruct.extra_generators)]


def run_targets(cfg: EnsembleInstructRun, stages: Mapping[str, Any],
                counters: Mapping[str, Mapping[str, int]]) -> dict[str, targets.Target]:
    by_target = targets.target_counters(counters)
    out = {}
    for key in ("type_a", "type_b"):
        tc = getattr(cfg.ensemble_instruct, key)
        if tc.num_instructions:  # 0 skips the type: nothing was asked
            name = targets.ensemble_target(key)
            out[name] = targets.bootstrap_target(tc.num_instructions, tc.prompt_budget,
                                                 by_target.get(name, {}))
    return out


def card_models(config: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The extra models, for the dataset card (their revisions are on the rows)."""
    return [{"role": f"extra output ({extra['name']})", "model": extra["generator"]["model"],
             "served_as": extra["generator"]["model"],
             "backend": extra["generator"]["backend"],
             "revision": "see the rows' generator_revision"}
            for extra in config["ensemble_instruct"]["extra_generators"]]


RECIPE = Recipe(
    name="ensemble_instruct",
    paper="Ensemble-Instruct (Lee et al., Findings of EMNLP 2023, arXiv:2310.13961)",
    config=EnsembleInstructConfig, validate=validate, build=build, check=check,
    generators=generators, targets=run_targets, card_models=card_models)
