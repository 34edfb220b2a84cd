"""What a recipe is: one `Recipe` record, registered in `pipelines.recipes.registry.REGISTRY`.

Everything the rest of the program needs to know about a recipe is a field here, so nothing
outside the registry branches on a recipe's name: the CLI, the run and the config loader ask
the record, and hand the manifest, the dataset card and the summary what they need of it
(`Recipe.info`, pipelines/outputs/info.py: outputs import no recipe). A recipe's folder
(`pipelines/recipes/<name>/`) holds its config section, its graph builder and its steps; its
`recipe.py` builds the record (`RECIPE`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import apache_beam as beam

from pipelines.generators.backends import GeneratorIdentity, served_context
from pipelines.generators.handler import GeneratorModelHandler
from pipelines.outputs.info import RecipeInfo
from pipelines.settings import GeneratorConfig, RunSettings
from pipelines.transforms.quality import JudgeModel

#: The part of a run's config a recipe reads: `RunSettings` and the recipe's own section (its
#: `<Name>Run` protocol). Every callable below is called with the whole `RunConfig`, which
#: has every section; a recipe annotates what it reads, so it never imports the config
#: module (which imports the registry, and so every recipe).
Cfg = TypeVar("Cfg", bound=RunSettings, covariant=True)


@dataclass
class RecipeOutputs:
    """What a recipe's graph yields: the dataset (the rows that become `data/`), extra tables
    (e.g. the accepted instructions), and its rejected and failed collections."""

    dataset: beam.PCollection
    tables: dict[str, beam.PCollection] = field(default_factory=dict)
    rejected: list[beam.PCollection] = field(default_factory=list)
    failed: list[beam.PCollection] = field(default_factory=list)
    # Extra outputs written by their own transform: name -> (items, directory -> PTransform).
    files: dict[str, tuple[beam.PCollection, Callable[[str], beam.PTransform]]] = field(
        default_factory=dict)


@dataclass(frozen=True)
class Inputs:
    """A config's inputs, checked before anything is written (`Recipe.validate`)."""

    rows: int  # seed tasks, input rows or tree nodes: the manifest's input count
    identity: GeneratorIdentity | None  # None: the recipe calls no generator
    seeds: Sequence[Any] = ()  # seed tasks, for the recipes that start from them


@dataclass(frozen=True)
class BuildContext(Generic[Cfg]):
    """What a recipe's graph builder gets besides the pipeline; `BuildContext[SelfInstructRun]`
    says which part of the config the builder reads."""

    cfg: Cfg
    inputs: Inputs
    handler: GeneratorModelHandler | None  # the main generator (None without one)
    cache_dir: str | None  # for the recipe's own extra generators
    endpoint: str | None  # tests: every generator call goes to this server
    resource_hints: Mapping[str, str]  # Dataflow: GPU hints for generation steps

    def judge(self) -> JudgeModel | None:
        """The run's main generator as the LLM judge; None when the recipe has none."""
        if self.handler is None or self.inputs.identity is None:
            return None
        return JudgeModel(self.handler, self.inputs.identity, self.cfg.recipe, self.cfg.seed,
                          served_context(self.cfg.generator))


# A chained step's graph: the previous step's kept rows in, this step's outputs out. The str
# prefixes its stage names (counters, manifest) and labels, so a step may repeat stages an
# earlier step ran (e.g. the filter chain every generation recipe ends with).
BuildRows = Callable[[beam.PCollection, BuildContext[Any], str], RecipeOutputs]

# Config-taking callables are typed with `Any` for the config: each recipe's own function
# names the protocol it reads, and a narrower parameter would not fit `RunSettings` here.
Targets = Callable[[Any, Mapping[str, Any], Mapping[str, Mapping[str, int]]], dict[str, Any]]


def no_check(cfg: RunSettings) -> None:
    """A recipe without rules across config sections."""


def no_targets(cfg: RunSettings, stages: Mapping[str, Any],
               counters: Mapping[str, Mapping[str, int]]) -> dict[str, Any]:
    return {}


def main_generator(cfg: RunSettings) -> list[tuple[str, GeneratorConfig]]:
    return [("generator.model", cfg.generator)]


def no_generators(cfg: RunSettings) -> list[tuple[str, GeneratorConfig]]:
    return []


def no_models(config: Mapping[str, Any]) -> list[dict[str, Any]]:
    return []


def no_seed_source(config: Mapping[str, Any]) -> str | None:
    return None


@dataclass(frozen=True)
class Recipe:
    """One recipe. The config key of its section, its output folder names and its manifest
    `recipe` value are all `name`, the key it is registered under."""

    name: str
    paper: str  # one line for the dataset card: what the recipe is, and its paper
    validate: Callable[[Any], Inputs]  # read and check every input; raise InputError
    build: Callable[[beam.Pipeline, BuildContext[Any]], RecipeOutputs]  # the job graph
    config: type | None = None  # its config section class (YAML key `name`); None: none
    needs_input: bool = False  # reads an existing dataset (`input:`), else must not have one
    optional_input: bool = False  # may read one (`input:`), e.g. UltraChat's passages
    check: Callable[[Any], None] = no_check  # rules across config sections
    # Every generator it calls, as (what the config calls it, its config): the first is
    # `generator`. Used for server settings in the manifest and for input locations.
    generators: Callable[[Any], list[tuple[str, GeneratorConfig]]] = main_generator
    targets: Targets = no_targets  # manifest `targets`: {config key: Target}
    model_role: str = "generator"  # what the main generator does, for the dataset card
    card_models: Callable[[Mapping[str, Any]], list[dict[str, Any]]] = no_models  # more models
    # The card's seed-data line when the recipe's data does not come from seed_tasks/input
    # (pipelines.outputs.info.CONFIG_ROOT: written in the config).
    seed_source: Callable[[Mapping[str, Any]], str | None] = no_seed_source
    # Summary lines for its report (reports/<name>.json); None: only its `summary` rows.
    report_lines: Callable[[dict[str, Any]], list[str]] | None = None
    # Can it follow another recipe in one job (a config's `then:`)? Then: its graph over the
    # previous step's rows, and the checks that stand in for `validate` (no input to read).
    build_rows: BuildRows | None = None
    validate_rows: Callable[[Any], None] = no_check

    @property
    def accepts_rows(self) -> bool:
        return self.build_rows is not None

    @property
    def uses_generator(self) -> bool:
        return self.generators is not no_generators

    @property
    def info(self) -> RecipeInfo:
        """What the card and the summary say about it: outputs/ know no recipe, the run and
        the CLI pass this down."""
        return RecipeInfo(self.paper, self.model_role, self.card_models, self.seed_source,
                          self.report_lines)
