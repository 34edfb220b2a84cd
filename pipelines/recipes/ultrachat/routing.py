"""Sector 3's content-type routing and the user simulator's personas, read from files.

Source: Ding et al. 2023 (arXiv:2305.14233) §3.3: the paper sorts its C4 passages into
content types by keywords matched to each passage's source (URL and title) and asks for the
instruction types that suit each content type; §3.4: the user model is prompted with the
history and a user personality. The paper publishes neither the keyword lists nor the
personalities, so both are files the run names (the demo ships small ones, written by us);
without them sector 3 uses one generic request list and the user one fixed role line.

A content-types file (YAML):

    types:                     # tried in order; the first with a keyword hit wins
      - name: news article
        keywords: [news, reuters, election]
        requests: [summarize it in two sentences, write a headline for it]
    default:                   # a passage no keyword matched
      name: other text
      requests: [summarize it, ask a question about it]

Keywords match case-insensitively on word boundaries ("news" in "bbc.co.uk/news/x", not in
"newsletter"). Pure functions, no Beam.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from pipelines.errors import InputError
from pipelines.transforms.provenance import derive_seed


@dataclass(frozen=True)
class ContentType:
    """One content type: the keywords that pick it and the kinds of request it suits."""

    name: str
    keywords: tuple[str, ...]
    requests: tuple[str, ...]
    _pattern: re.Pattern[str] | None = field(init=False, default=None, repr=False,
                                             compare=False)

    def __post_init__(self) -> None:
        words = sorted({k.strip() for k in self.keywords if k.strip()}, key=len, reverse=True)
        if words:
            object.__setattr__(self, "_pattern", re.compile(
                r"(?<![^\W_])(?:" + "|".join(re.escape(w) for w in words) + r")(?![^\W_])",
                re.IGNORECASE))

    def matches(self, texts: Iterable[str]) -> bool:
        return self._pattern is not None and any(self._pattern.search(t) for t in texts)


@dataclass(frozen=True)
class ContentTypes:
    """The routing table: types tried in order, and the default for a passage none matched."""

    types: tuple[ContentType, ...]
    default: ContentType

    def route(self, texts: Iterable[str]) -> ContentType:
        texts = tuple(t for t in texts if t)
        return next((t for t in self.types if t.matches(texts)), self.default)


def _strings(value: object, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise InputError(f"{where}: must be a list of non-empty strings")
    return tuple(v.strip() for v in value)


def _content_type(item: object, where: str, keywords: bool = True) -> ContentType:
    if not isinstance(item, dict) or not isinstance(item.get("name"), str):
        raise InputError(f"{where}: must be a mapping with a name")
    requests = _strings(item.get("requests"), f"{where}.requests")
    if not requests:
        raise InputError(f"{where}.requests: must not be empty")
    return ContentType(item["name"].strip(),
                       _strings(item.get("keywords"), f"{where}.keywords") if keywords else (),
                       requests)


def read_content_types(path: str) -> ContentTypes:
    """The routing table of `ultrachat.materials.content_types_file`; an InputError naming
    the file and the entry when it is not one."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise InputError(f"{path}: cannot read the content types ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("types"), list):
        raise InputError(f"{path}: needs `types:` (a list) and `default:`")
    types = tuple(_content_type(item, f"{path}: types[{i}]")
                  for i, item in enumerate(data["types"]))
    return ContentTypes(types, _content_type(data.get("default"), f"{path}: default",
                                             keywords=False))


def read_lines(path: str, what: str) -> tuple[str, ...]:
    """A file's non-blank lines, `#` comments left out (entities, personas)."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read {what} ({exc})") from None
    return tuple(line.strip() for line in lines
                 if line.strip() and not line.lstrip().startswith("#"))


def draw_persona(personas: tuple[str, ...], seed: int, opening_id: str) -> str | None:
    """The user's personality for one dialogue: seeded by the run's seed and the opening
    line, so a rerun gives every dialogue the same user. None without personas."""
    if not personas:
        return None
    return personas[random.Random(derive_seed(seed, "persona", opening_id)).randrange(
        len(personas))]
