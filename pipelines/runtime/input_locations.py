"""Everything a run reads or keeps, as (what, location) pairs: an output must contain none.

This needs the config (its declared path fields, `pipelines.config.INPUT_PATHS`) and the
recipe (the generators it starts), so it lives at the run's level; the output guard
(pipelines/outputs/output_dir.py) gets the plain list and knows neither.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from pipelines.config import INPUT_PATHS, RunConfig, path_values
from pipelines.generators.cache import default_cache_dir
from pipelines.generators.embedded import default_cache_root
from pipelines.generators.revision import hub_cache_dir, server_arg
from pipelines.recipes.registry import REGISTRY

# vLLM server arguments that name what the server reads. A model cache (--download-dir) is
# guarded even before it exists; the others only as existing paths (a tokenizer may be a hub
# id, a chat template the template itself).
SERVER_PATH_FLAGS: Final = {"--download-dir": True, "--chat-template": False,
                            "--tokenizer": False, "--generation-config": False}


def input_locations(cfg: RunConfig, config_path: str | Path | None = None
                    ) -> list[tuple[str, str]]:
    """(what, location) of everything the run reads or keeps; an output must not contain any
    of them. Every declared path field (`INPUT_PATHS`: a model field only when it names a
    folder here), the response cache even when caching is off, the model caches, and paths in
    the server arguments of the generators the run starts. Remote locations stay strings
    with a scheme."""
    found: list[tuple[str, str]] = []
    if config_path is not None:
        found.append(("the config file", str(config_path)))
    for dotted, spec in INPUT_PATHS.items():
        found += [(dotted, value) for value in path_values(cfg, dotted)
                  if not spec.maybe_name or _exists(value)]
    found += [("the response cache", default_cache_dir()),
              ("the model cache", str(default_cache_root())),
              ("the Hugging Face cache", str(hub_cache_dir()))]
    for what, gen in REGISTRY[cfg.recipe].generators(cfg):
        for flag, always in SERVER_PATH_FLAGS.items():
            value = server_arg(gen.server_args, flag)
            if value and (always or _exists(value)):
                found.append((f"{what}'s {flag}", value))
    return found


def _exists(location: str) -> bool:
    """A remote location, or a path that exists on this machine."""
    return "://" in location or Path(location).expanduser().exists()
