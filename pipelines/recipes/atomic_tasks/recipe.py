"""The atomic-task recipe's registry entry (EcomGPT's atomic tasks from any dataset)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipelines.generators.backends import BACKENDS, resolve_identity
from pipelines.recipes.atomic_tasks.build import build, build_rows
from pipelines.recipes.atomic_tasks.config import AtomicTasksConfig, AtomicTasksRun
from pipelines.recipes.base import Inputs, Recipe
from pipelines.settings import STRUCTURED_OUTPUTS_ARGS, STRUCTURED_OUTPUTS_FLAG, FieldError
from pipelines.transforms.dataset_input import validate as validate_input

if TYPE_CHECKING:
    from pipelines.settings import GeneratorConfig


def _simplifies(cfg: AtomicTasksRun) -> bool:
    return "simplification" in cfg.atomic_tasks.transforms


def validate(cfg: AtomicTasksRun) -> Inputs:
    """The input reads; the generator resolves when a transform needs it."""
    assert cfg.input is not None
    rows = validate_input(cfg.input)
    return Inputs(rows, resolve_identity(cfg.generator) if _simplifies(cfg) else None)


def generators(cfg: AtomicTasksRun) -> list[tuple[str, GeneratorConfig]]:
    return [("generator.model", cfg.generator)] if _simplifies(cfg) else []


def check(cfg: AtomicTasksRun) -> None:
    gen, simplification = cfg.generator, cfg.atomic_tasks.simplification
    if _simplifies(cfg) and simplification.structured_output and not (
            BACKENDS[gen.backend].remote or STRUCTURED_OUTPUTS_FLAG in gen.server_args):
        raise FieldError("generator", f"server_args need {' '.join(STRUCTURED_OUTPUTS_ARGS)!r} "
                         "for atomic_tasks.simplification.structured_output (or set it false)")
    if cfg.filters.novelty.enabled and set(cfg.atomic_tasks.transforms) - {"simplification"}:
        # Reversed and multiple-choice rows share one templated instruction each; the novelty
        # filter compares instructions only and would keep one row per template.
        raise FieldError("filters", "novelty compares instructions only, and reversal and "
                         "recombination rows share templated instructions: disable "
                         "filters.novelty (filters.near_dup compares whole rows)")


RECIPE = Recipe(
    name="atomic_tasks",
    paper="EcomGPT atomic tasks: reversal, simplification, recombination (Li et al., AAAI "
          "2024, arXiv:2308.06966)",
    config=AtomicTasksConfig, validate=validate, build=build, check=check, needs_input=True,
    generators=generators, model_role="task splitter", build_rows=build_rows)
