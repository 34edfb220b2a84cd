"""The atomic-task recipe's graph: every configured transform over the input rows (or the
kept rows of the step before it), their derived rows through the shared filter chain."""

from __future__ import annotations

from collections.abc import Callable

import apache_beam as beam

from pipelines.recipes.atomic_tasks import steps
from pipelines.recipes.atomic_tasks.config import AtomicTasksRun
from pipelines.recipes.base import BuildContext, RecipeOutputs
from pipelines.transforms.atomic_tasks import (
    Derived,
    RecombineTasks,
    ReverseTasks,
    SimplifyTasks,
)
from pipelines.transforms.filter_chain import apply_filters, read_input


def _reversal(ctx: BuildContext[AtomicTasksRun], stage: str) -> beam.PTransform:
    return ReverseTasks(steps.reversal_rule(ctx.cfg.atomic_tasks), stage)


def _simplification(ctx: BuildContext[AtomicTasksRun], stage: str) -> beam.PTransform:
    assert ctx.handler is not None and ctx.inputs.identity is not None
    return SimplifyTasks(ctx.handler, ctx.inputs.identity,
                         steps.simplify_settings(ctx.cfg.atomic_tasks), ctx.cfg.seed, stage)


def _recombination(ctx: BuildContext[AtomicTasksRun], stage: str) -> beam.PTransform:
    return RecombineTasks(steps.recombination_rule(ctx.cfg.atomic_tasks, ctx.cfg.seed), stage)


# Config name -> (step label, the transform for this run).
TRANSFORMS: dict[str, tuple[str, Callable[[BuildContext, str], beam.PTransform]]] = {
    "reversal": ("Reverse", _reversal),
    "simplification": ("Simplify", _simplification),
    "recombination": ("Recombine", _recombination),
}


def build(p: beam.Pipeline, ctx: BuildContext[AtomicTasksRun]) -> RecipeOutputs:
    assert ctx.cfg.input is not None
    return build_rows(read_input(p, ctx.cfg.input), ctx)


def build_rows(rows: beam.PCollection, ctx: BuildContext[AtomicTasksRun],
               prefix: str = "") -> RecipeOutputs:
    """Each transform reads every row; `prefix` goes before stage names (a chained step)."""
    at = ctx.cfg.atomic_tasks
    made, rejected, failed = [rows] if at.keep_source else [], [], []
    for name in at.transforms:
        label, transform = TRANSFORMS[name]
        out: Derived = rows | f"{prefix}AtomicTasks/{label}" >> transform(
            ctx, prefix + steps.STAGES[name])
        made.append(out.derived)
        rejected.append(out.rejected)
        failed.append(out.failed)
    dataset = made | f"{prefix}AtomicTasks/Rows" >> beam.Flatten()
    dataset, filtered, filter_failed = apply_filters(dataset, ctx.cfg.filters, prefix,
                                                     judge=ctx.judge())
    return RecipeOutputs(dataset, rejected=[*rejected, *filtered],
                         failed=[*failed, *filter_failed])
