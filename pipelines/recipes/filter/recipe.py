"""The `filter` recipe: the configured filter chain over an existing dataset, no generator."""

from __future__ import annotations

from typing import TYPE_CHECKING

import apache_beam as beam

from pipelines.recipes.base import BuildContext, Inputs, Recipe, RecipeOutputs, no_generators
from pipelines.transforms.dataset_input import validate as validate_input
from pipelines.transforms.filter_chain import apply_filters, read_input

if TYPE_CHECKING:
    from pipelines.config import RunConfig


def validate(cfg: RunConfig) -> Inputs:
    assert cfg.input is not None
    return Inputs(validate_input(cfg.input), None)


def build(p: beam.Pipeline, ctx: BuildContext) -> RecipeOutputs:
    assert ctx.cfg.input is not None
    return RecipeOutputs(*apply_filters(read_input(p, ctx.cfg.input), ctx.cfg.filters))


RECIPE = Recipe(
    name="filter", paper="instructbeam's filter chain over an existing dataset",
    validate=validate, build=build, needs_input=True, generators=no_generators)
