"""Versioned Jinja2 prompt templates and built-in seed data shipped with instructbeam.

Templates live next to this module as ``<algorithm>/<name>.v<version>.jinja`` and are read
through :mod:`importlib.resources`, so they resolve the same way from a source checkout, an
installed wheel or a zipped package, independently of the current working directory.

This module deliberately imports neither Apache Beam nor any HTTP client: workers and unit tests
load prompts cheaply, and the templates can be rendered anywhere.
"""

from __future__ import annotations

import functools
import pathlib
import re
from dataclasses import dataclass
from importlib import resources

import jinja2

__all__ = [
    "BUILTIN_SEED_TASKS",
    "PromptRenderError",
    "PromptTemplate",
    "builtin_path",
    "load_prompt",
]

#: Package-relative path of the built-in Self-Instruct seed tasks (JSON Lines).
BUILTIN_SEED_TASKS = "self_instruct/seed_tasks.v1.jsonl"

_PACKAGE = "prompts"
_NAME_RE = re.compile(r"^[a-z0-9_]+$")

# One shared environment: StrictUndefined turns silently-empty prompts into loud errors,
# keep_trailing_newline preserves the exact end of a prompt (it matters to the model and the
# parsers), and autoescape is off because prompts are plain text, not HTML.
_ENV = jinja2.Environment(
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    autoescape=False,
)

_UNDEFINED_RE = re.compile(r"'([^']+)' is undefined")


class PromptRenderError(ValueError):
    """A template could not be rendered, typically because a variable was not supplied."""


@dataclass(frozen=True, slots=True)
class PromptTemplate:
    """One immutable, versioned prompt template.

    The version is part of the identity so that a change of wording is always a new file (and a
    new ``ref`` recorded next to generated data) rather than a silent edit of an old prompt.
    """

    algorithm: str
    name: str
    version: int
    source: str

    @property
    def ref(self) -> str:
        """Stable identifier such as ``self_instruct/instruction_gen@v1`` (for provenance)."""
        return f"{self.algorithm}/{self.name}@v{self.version}"

    def render(self, **variables: object) -> str:
        """Render the template; extra variables are ignored, missing ones raise.

        Raises:
            PromptRenderError: a variable used by the template was not given (the message names
                the template ``ref`` and the variable), or rendering failed otherwise.
        """
        try:
            compiled = _compile(self.source)
            return compiled.render(**variables)
        except jinja2.UndefinedError as exc:
            match = _UNDEFINED_RE.search(str(exc))
            detail = f"missing variable {match.group(1)!r}" if match else f"undefined value: {exc}"
            raise PromptRenderError(f"prompt {self.ref}: {detail}") from exc
        except jinja2.TemplateError as exc:
            raise PromptRenderError(f"prompt {self.ref}: {exc}") from exc


@functools.lru_cache(maxsize=256)
def _compile(source: str) -> jinja2.Template:
    """Compile template text once per process (keyed by the text, so equal templates share)."""
    return _ENV.from_string(source)


def builtin_path(relative: str) -> pathlib.Path:
    """Return the filesystem path of a data file shipped inside the ``prompts`` package.

    ``relative`` uses forward slashes, e.g. :data:`BUILTIN_SEED_TASKS`. The package is expected to
    be installed as regular files (not zipped), which is how the project is built and deployed.
    """
    traversable = resources.files(_PACKAGE).joinpath(*relative.split("/"))
    return pathlib.Path(str(traversable))


def _template_relpath(algorithm: str, name: str, version: int) -> str:
    return f"{algorithm}/{name}.v{version}.jinja"


@functools.cache
def load_prompt(algorithm: str, name: str, version: int) -> PromptTemplate:
    """Load (and compile) ``<algorithm>/<name>.v<version>.jinja`` from the package.

    Results are cached: templates are immutable package data, and pipelines call this from many
    DoFn setups, so reading and compiling each one once per process is enough.

    Raises:
        FileNotFoundError: no such template (the message names the package-relative path).
        ValueError: ``algorithm``/``name`` are not simple snake_case identifiers or ``version`` is
            not a positive integer (guards against path traversal through these arguments).
        PromptRenderError: the template text is not valid Jinja2.
    """
    if not _NAME_RE.match(algorithm) or not _NAME_RE.match(name):
        raise ValueError(f"invalid prompt identifier: algorithm={algorithm!r}, name={name!r}")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"invalid prompt version: {version!r}")
    relpath = _template_relpath(algorithm, name, version)
    resource = resources.files(_PACKAGE).joinpath(algorithm, f"{name}.v{version}.jinja")
    if not resource.is_file():
        raise FileNotFoundError(f"prompt template not found: {_PACKAGE}/{relpath}")
    source = resource.read_text(encoding="utf-8")
    try:
        _compile(source)  # fail fast on a syntax error, and warm the compile cache
    except jinja2.TemplateSyntaxError as exc:
        raise PromptRenderError(f"prompt {_PACKAGE}/{relpath}: invalid template: {exc}") from exc
    return PromptTemplate(algorithm=algorithm, name=name, version=version, source=source)
