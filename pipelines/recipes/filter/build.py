"""The `filter` recipe's graph: the configured filter chain over an existing dataset, or over
the kept rows of the step before it (a config's `then:`)."""

from __future__ import annotations

import apache_beam as beam

from pipelines.recipes.base import BuildContext, RecipeOutputs
from pipelines.settings import RunSettings
from pipelines.transforms.filter_chain import apply_filters, read_input


def build(p: beam.Pipeline, ctx: BuildContext[RunSettings]) -> RecipeOutputs:
    assert ctx.cfg.input is not None
    return build_rows(read_input(p, ctx.cfg.input), ctx)


def build_rows(rows: beam.PCollection, ctx: BuildContext[RunSettings],
               prefix: str = "") -> RecipeOutputs:
    dataset, rejected, failed = apply_filters(rows, ctx.cfg.filters, prefix,
                                              judge=ctx.judge())
    return RecipeOutputs(dataset, rejected=rejected, failed=failed)
