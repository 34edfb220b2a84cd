"""UltraChat's registry entry: how it is configured, validated, built and reported."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipelines.generators.backends import resolve_identity
from pipelines.recipes.base import Inputs, Recipe, main_generator
from pipelines.recipes.ultrachat.build import build
from pipelines.recipes.ultrachat.config import UltraChatConfig, UltraChatRun
from pipelines.recipes.ultrachat.steps import read_entities, read_personas, read_routing
from pipelines.settings import FieldError, GeneratorConfig
from pipelines.transforms.dataset_input import validate as validate_input


def validate(cfg: UltraChatRun) -> Inputs:
    """Before anything is written: the entity, persona and content-type files and the
    passages read, every model resolves. Input rows: the given subjects (meta-topics,
    entities, material types) plus the passages."""
    uc = cfg.ultrachat
    rows = 0
    if uc.world.enabled:
        rows += len(uc.world.meta_topics) + len(read_entities(cfg))
    if uc.writing.enabled:
        rows += len(uc.writing.material_types)
    if cfg.input is not None:
        rows += validate_input(cfg.input)
    if uc.user_generator is not None:
        resolve_identity(uc.user_generator)
    read_personas(cfg)
    if cfg.input is not None:
        read_routing(cfg)
    return Inputs(rows, resolve_identity(cfg.generator))


def check(cfg: UltraChatRun) -> None:
    uc = cfg.ultrachat
    if not (uc.world.enabled or uc.writing.enabled or cfg.input is not None):
        raise FieldError("ultrachat", "has no sector to draw opening lines from: enable "
                                      "world or writing, or give input (passages)")
    if cfg.input is not None and uc.materials.passage_field == "output" and not (
            cfg.input.output_field or cfg.input.messages_field):
        raise FieldError("ultrachat", "materials.passage_field 'output' needs "
                                      "input.output_field or input.messages_field")


def generators(cfg: UltraChatRun) -> list[tuple[str, GeneratorConfig]]:
    user = cfg.ultrachat.user_generator
    return [*main_generator(cfg), *((("ultrachat.user_generator", user),) if user else ())]


def card_models(config: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The user simulator, when it is a model of its own."""
    user = config["ultrachat"].get("user_generator")
    if not user:
        return []
    return [{"role": "user simulator", "model": user["model"], "served_as": user["model"],
             "backend": user["backend"], "revision": "see the rows' turn_generators"}]


def seed_source(config: Mapping[str, Any]) -> str | None:
    if config.get("input"):
        return (f"passages from {config['input']['path']} (sector 3) and opening lines the "
                "generator wrote: check the passages' licence")
    return "opening lines the generator wrote from topics and material types in the config"


RECIPE = Recipe(
    name="ultrachat",
    paper="UltraChat (Ding et al., EMNLP 2023, arXiv:2305.14233)",
    config=UltraChatConfig, validate=validate, build=build, check=check,
    generators=generators, model_role="assistant (and user simulator)",
    card_models=card_models, seed_source=seed_source, optional_input=True)
