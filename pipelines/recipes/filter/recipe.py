"""The `filter` recipe: the configured filter chain over an existing dataset; the generator
is only started when the chain's LLM judge (`filters.scorers.llm_judge`) runs."""

from __future__ import annotations

from filters.quality import LLM_JUDGE
from pipelines.generators.backends import resolve_identity
from pipelines.recipes.base import Inputs, Recipe, no_generators
from pipelines.recipes.filter.build import build, build_rows
from pipelines.settings import RunSettings
from pipelines.transforms.dataset_input import validate as validate_input


def validate(cfg: RunSettings) -> Inputs:
    assert cfg.input is not None
    judge = resolve_identity(cfg.generator) if LLM_JUDGE in cfg.filters.steps() else None
    return Inputs(validate_input(cfg.input), judge)


RECIPE = Recipe(
    name="filter", paper="instructbeam's filter chain over an existing dataset",
    validate=validate, build=build, needs_input=True, generators=no_generators,
    build_rows=build_rows)
