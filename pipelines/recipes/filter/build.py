"""The `filter` recipe's graph: the configured filter chain over an existing dataset."""

from __future__ import annotations

import apache_beam as beam

from pipelines.recipes.base import BuildContext, RecipeOutputs
from pipelines.transforms.filter_chain import apply_filters, read_input


def build(p: beam.Pipeline, ctx: BuildContext) -> RecipeOutputs:
    assert ctx.cfg.input is not None
    dataset, rejected = apply_filters(read_input(p, ctx.cfg.input), ctx.cfg.filters)
    return RecipeOutputs(dataset, rejected=rejected)
