"""What the outputs are told about a run and its recipes, as plain data.

The manifest, the dataset card and the terminal summary need a few facts that only a recipe
or the config knows: the recipe's paper, what its models do, where its seed data came from,
how to print its report, the sizes it was asked for. Outputs sit below the recipes and the
config, so they do not look these up: a recipe's `Recipe` record produces its `RecipeInfo`
(pipelines/recipes/base.py), and `pipelines/run.py` and `pipelines/cli.py` hand it down with
a `RunInfo` built from the config. A card or a summary can then be written, and tested, for
any manifest without loading a recipe.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pipelines.settings import GeneratorConfig

# A `RecipeInfo.seed_source` answer: the seed data is written in the config itself (the card
# then needs no licence warning for it).
CONFIG_ROOT = "the root task and examples written in the run's config"

Counters = Mapping[str, Mapping[str, int]]  # Beam counters, {namespace: {name: value}}
# A step's targets from the run's stage table and counters: {config key: Target}
# (pipelines/outputs/targets.py).
StepTargets = Callable[[Mapping[str, Any], Counters], dict[str, Any]]


@dataclass(frozen=True)
class RecipeInfo:
    """What the dataset card and the summary say about one recipe."""

    paper: str  # one line: what the recipe is, and its paper
    model_role: str  # what the main generator does ("generator", "tagger", ...)
    # More models than the main generator, as card rows, from the manifest's config.
    card_models: Callable[[Mapping[str, Any]], list[dict[str, Any]]]
    # The seed-data line when the data does not come from seed_tasks/input, else None.
    seed_source: Callable[[Mapping[str, Any]], str | None]
    # Summary lines for its report (reports/<recipe>.json); None: only its `summary` rows.
    report_lines: Callable[[dict[str, Any]], list[str]] | None = None


@dataclass(frozen=True)
class RunInfo:
    """What the manifest needs of a run's config."""

    recipe: str  # the first step's recipe
    then: tuple[str, ...]  # the chained steps after it (`then:`)
    config: dict[str, Any]  # the whole config, as the manifest records it
    generator: GeneratorConfig  # the `generator` section (backend, timeouts)
    generators: tuple[GeneratorConfig, ...]  # every generator whose server settings to record
    targets: Mapping[str, StepTargets]  # per step's recipe name
