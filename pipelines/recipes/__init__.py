"""One folder per recipe (config section, graph builder, steps, `recipe.py` entry); the list
of recipes is `pipelines.recipes.registry.REGISTRY`, the record they fill is
`pipelines.recipes.base.Recipe`."""
