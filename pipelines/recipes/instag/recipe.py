"""#InsTag's registry entry: how it is configured, validated, built and reported."""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from typing import Any

from filters.tag_embeddings import REQUIRES
from pipelines.errors import InputError
from pipelines.generators.backends import BACKENDS, resolve_identity
from pipelines.outputs import targets
from pipelines.recipes.base import Inputs, Recipe
from pipelines.recipes.instag.build import build, build_rows
from pipelines.recipes.instag.config import InsTagConfig, InsTagRun
from pipelines.recipes.instag.steps import format_report
from pipelines.recipes.instag.targets import INSTAG, instag_target
from pipelines.settings import STRUCTURED_OUTPUTS_ARGS, STRUCTURED_OUTPUTS_FLAG, FieldError
from pipelines.transforms.dataset_input import validate as validate_input


def validate(cfg: InsTagRun) -> Inputs:
    """Before anything is written: the packages the configured steps need are importable,
    the input reads, the tagger resolves."""
    assert cfg.input is not None
    check_packages(cfg)
    rows = validate_input(cfg.input)
    return Inputs(rows, resolve_identity(cfg.generator))


def check_packages(cfg: InsTagRun) -> None:
    """The packages the configured normalization steps need are importable."""
    ig = cfg.instag
    needed = []
    if ig.semantic_aggregation:
        needed += ["sklearn", *REQUIRES[ig.embedding_model]]
    if ig.association_aggregation:
        needed += ["mlxtend", "pandas"]
    missing = [m for m in needed if importlib.util.find_spec(m) is None]
    if missing:
        raise InputError(f"instag: {', '.join(missing)} not installed; "
                         "pip install 'instructbeam[instag]'")


def check(cfg: InsTagRun) -> None:
    gen = cfg.generator
    if cfg.instag.structured_output and not (
            BACKENDS[gen.backend].remote or STRUCTURED_OUTPUTS_FLAG in gen.server_args):
        raise FieldError("generator",
                         f"server_args need {' '.join(STRUCTURED_OUTPUTS_ARGS)!r} for "
                         "instag.structured_output (or set instag.structured_output: false)")


def run_targets(cfg: InsTagRun, stages: Mapping[str, Any],
                counters: Mapping[str, Mapping[str, int]]) -> dict[str, targets.Target]:
    if cfg.instag.sample_size is None:
        return {}
    return {INSTAG: instag_target(cfg, stages)}


RECIPE = Recipe(
    name="instag",
    paper="#InsTag (Lu et al., ICLR 2024, arXiv:2308.07074)",
    config=InsTagConfig, validate=validate, build=build, check=check, needs_input=True,
    targets=run_targets, model_role="tagger", build_rows=build_rows,
    validate_rows=check_packages, report_lines=format_report)
