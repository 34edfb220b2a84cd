"""Every recipe, by the name a config's `recipe:` gives. Adding one: a folder beside this
file with its `recipe.py` (RECIPE), and one line here. The dict stays a literal (a test reads
it from the source): the list of recipes is visible without running anything."""

from __future__ import annotations

from pipelines.outputs.info import RecipeInfo
from pipelines.recipes.atomic_tasks.recipe import RECIPE as ATOMIC_TASKS
from pipelines.recipes.base import Recipe
from pipelines.recipes.ensemble_instruct.recipe import RECIPE as ENSEMBLE_INSTRUCT
from pipelines.recipes.explore_instruct.recipe import RECIPE as EXPLORE_INSTRUCT
from pipelines.recipes.filter.recipe import RECIPE as FILTER
from pipelines.recipes.instag.recipe import RECIPE as INSTAG
from pipelines.recipes.self_instruct.recipe import RECIPE as SELF_INSTRUCT
from pipelines.recipes.ultrachat.recipe import RECIPE as ULTRACHAT

REGISTRY: dict[str, Recipe] = {
    "self_instruct": SELF_INSTRUCT,
    "filter": FILTER,
    "explore_instruct": EXPLORE_INSTRUCT,
    "ensemble_instruct": ENSEMBLE_INSTRUCT,
    "instag": INSTAG,
    "atomic_tasks": ATOMIC_TASKS,
    "ultrachat": ULTRACHAT,
}


def recipe_info() -> dict[str, RecipeInfo]:
    """What the card and the summary say about every recipe, by name (outputs/ import no
    recipe: the run and the CLI pass this down)."""
    return {name: recipe.info for name, recipe in REGISTRY.items()}
