"""#InsTag (Lu et al., ICLR 2024): tagger answers, thresholds and the first two normalization steps.

The paper released no code; this is the reference implementation of §3.2 as described in
reference/seed-algorithms.md §4. Everything here is a plain function over tag strings and
counts, so the Beam shell (`pipelines/recipes/instag/build.py`) and the small-data helper
`filters.instag_normalize.normalize_tag_sets` run the very same decisions.

A *count* of a tag is the number of queries (conversations, for multi-turn input) whose tag set
contains it: a tag named twice in one answer, or in two turns of one conversation, counts once.
A normalization step maps each tag of the current vocabulary to a tag of the next one, or drops
it (absent from the mapping); composing the steps maps every raw tag to its final form.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from filters.stemming import porter_stem
from schemas import Reason

TagMap = dict[str, str]  # tag -> tag it becomes; a tag missing from the map is dropped


# --- the tagger's answer -------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class TagAnswer:
    """A parsed tagger answer: the tags in answer order (duplicates removed), or an error."""

    tags: tuple[str, ...] = ()
    explanations: tuple[str, ...] = ()
    reason: Reason | None = None  # set when the answer is malformed
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.reason is None


_FENCE = re.compile(r"^\s*```[A-Za-z0-9_-]*\s*\n?(.*?)\n?\s*```\s*$", re.S)
_SPACES = re.compile(r"\s+")


def clean_tag(tag: str) -> str:
    """A tag as said, with surrounding and repeated whitespace removed (nothing else)."""
    return _SPACES.sub(" ", tag).strip()


def _decode_first_json(text: str) -> Any:
    """The whole text as JSON, else the first JSON value starting at a '[' or '{'."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    decoder = json.JSONDecoder()
    for start in sorted(i for i in (text.find("["), text.find("{")) if i >= 0):
        try:
            return decoder.raw_decode(text, start)[0]
        except json.JSONDecodeError:
            continue
    raise ValueError("no JSON list or object in the answer")


def _items(value: Any) -> list[Any]:
    """Accept the asked shape (a list) and the usual near misses of small models."""
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        if "tag" in value:  # one object instead of a list (InstagScorer counts it as 1 tag)
            return [value]
        lists = [v for v in value.values() if isinstance(v, list)]
        if len(value) == 1 and lists:  # {"tags": [...]}
            return lists[0]
    raise ValueError(f"expected a JSON list of {{tag, explanation}}, got {type(value).__name__}")


MIN_TAG_LETTERS = 2
"""Ours: a tag with fewer letters names no intention ("a", "b", "7": small models copy answer
options and list numbers); such tags are left out, the rest of the answer stands."""


def tag_letters(tag: str) -> int:
    return sum(ch.isalpha() for ch in tag)


def raw_answer(text: str) -> Any:
    """A tagger answer as `tags_raw` keeps it: the JSON it is when it parses whole (so the
    column is one JSON document, not JSON inside JSON strings), else the text as said."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_tag_answer(text: str, finish_reason: str | None = None,
                     min_letters: int = MIN_TAG_LETTERS) -> TagAnswer:
    """Parse a tagger answer: a JSON list of {"tag": str, "explanation": str}.

    Tolerated: a code fence around the JSON, text before it, one object instead of a list, a
    list wrapped in a one-key object, plain strings as items. An empty list is a valid answer
    (a query without tags). Anything else is malformed: truncated (cut at the length limit),
    empty, or unparsable, with the reason in `detail`.
    """
    if not text.strip():
        return TagAnswer(reason=Reason.EMPTY_RESPONSE, detail="empty answer")
    body = text.strip()
    fenced = _FENCE.match(body)
    if fenced:
        body = fenced.group(1)
    try:
        items = _items(_decode_first_json(body))
    except ValueError as exc:
        reason = (Reason.RESPONSE_TRUNCATED if finish_reason == "length"
                  else Reason.UNPARSABLE_RESPONSE)
        return TagAnswer(reason=reason, detail=str(exc)[:200])
    tags: list[str] = []
    explanations: list[str] = []
    too_short = 0
    for item in items:
        if isinstance(item, str):
            tag, why = item, ""
        elif isinstance(item, dict) and isinstance(item.get("tag"), str):
            tag, why = item["tag"], item.get("explanation")
            why = why if isinstance(why, str) else ""
        else:
            continue
        tag = clean_tag(tag)
        if tag and tag_letters(tag) < min_letters:
            too_short += 1
            continue
        if tag and tag not in tags:
            tags.append(tag)
            explanations.append(why.strip())
    if items and not tags and not too_short:
        return TagAnswer(reason=Reason.UNPARSABLE_RESPONSE,
                         detail=f"none of the {len(items)} items has a non-empty 'tag' string")
    return TagAnswer(tuple(tags), tuple(explanations))


def tag_schema(max_tags: int, max_tag_chars: int, max_explanation_chars: int) -> dict[str, Any]:
    """The JSON schema sent for structured decoding: bounded so that max_tokens can suffice."""
    return {
        "type": "array",
        "minItems": 1,
        "maxItems": max_tags,
        "items": {
            "type": "object",
            "properties": {
                "tag": {"type": "string", "minLength": 1, "maxLength": max_tag_chars},
                "explanation": {"type": "string", "maxLength": max_explanation_chars},
            },
            "required": ["tag", "explanation"],
            "additionalProperties": False,
        },
    }


def union_tags(per_turn: Iterable[Iterable[str]]) -> tuple[str, ...]:
    """A conversation's tags: every turn's tags, first appearance first."""
    out: dict[str, None] = {}
    for tags in per_turn:
        out.update(dict.fromkeys(tags))
    return tuple(out)


# --- thresholds -----------------------------------------------------------------------------

def resolve_count(value: float, pool_size: int) -> float:
    """A threshold given as a count (>= 1) or as a fraction of the pool (< 1), as a count.

    The paper's α = 20 and support 40 are counts over a 306K pool; a fraction scales them to
    a pool of any size (20 / 306,044 ≈ 6.5e-5).
    """
    if value < 0:
        raise ValueError(f"a count threshold must be >= 0, got {value}")
    return float(value) if value >= 1 else value * pool_size


# --- step results ---------------------------------------------------------------------------

@dataclass(frozen=True)
class StepStats:
    """How one step changed the vocabulary: distinct tags before and after."""

    step: str
    before: int
    after: int
    removed: int = 0  # tags dropped without a replacement
    merged: int = 0  # tags folded into another tag
    params: dict[str, Any] = field(default_factory=dict)
    examples: tuple[tuple[str, str], ...] = ()  # a few (tag, became) pairs, for the report

    def as_dict(self) -> dict[str, Any]:
        return {"step": self.step, "before": self.before, "after": self.after,
                "removed": self.removed, "merged": self.merged, "params": self.params,
                "examples": [list(e) for e in self.examples]}


def step_stats(step: str, vocab: Iterable[str], mapping: TagMap, params: dict[str, Any]
           ) -> StepStats:
    vocab = list(vocab)
    after = set(mapping.values())
    removed = sum(1 for t in vocab if t not in mapping)
    changed = sorted((t, mapping[t]) for t in vocab if t in mapping and mapping[t] != t)
    return StepStats(step, len(vocab), len(after), removed,
                     len(vocab) - removed - len(after), params, tuple(changed[:5]))


def most_frequent(tags: Iterable[str], counts: Mapping[str, int]) -> str:
    """The representative of a group: most frequent, then the lexicographically smallest."""
    return min(tags, key=lambda t: (-counts.get(t, 0), t))


# --- step 1: frequency filter ---------------------------------------------------------------

def frequency_step(counts: Mapping[str, int], min_count: float) -> tuple[TagMap, StepStats]:
    """Drop tags seen in fewer than `min_count` queries (α = 20 in the paper)."""
    mapping = {t: t for t, c in counts.items() if c >= min_count}
    return mapping, step_stats("frequency", counts, mapping, {"min_count": min_count})


# --- step 2: rule aggregation ---------------------------------------------------------------

def rule_form(tag: str) -> str:
    """Lowercase, every special character (not a letter or digit) to a space, spaces collapsed.

    Unicode letters and digits count as regular characters, so non-English tags survive.
    """
    text = unicodedata.normalize("NFKC", tag).lower()
    text = "".join(ch if ch.isalnum() else " " for ch in text)
    return " ".join(text.split())


def rule_key(tag: str, stem: bool = True) -> str:
    """The rule-aggregation key: `rule_form`, each word Porter-stemmed (NLTK's default)."""
    words = rule_form(tag).split()
    if stem:
        words = [porter_stem(w) for w in words]
    return " ".join(words)


def rule_step(counts: Mapping[str, int], stem: bool = True) -> tuple[TagMap, StepStats]:
    """Merge tags with equal `rule_key`; a tag with an empty key (only symbols) is dropped.

    The merged tag is named by the most frequent member's `rule_form` (ties: smallest), so
    the vocabulary stays readable ("code generation", not the stem "code gener").
    """
    groups: dict[str, list[str]] = {}
    for tag in counts:
        key = rule_key(tag, stem)
        if key:
            groups.setdefault(key, []).append(tag)
    mapping: TagMap = {}
    for members in groups.values():
        label = rule_form(most_frequent(members, counts))
        mapping.update({t: label for t in members})
    return mapping, step_stats("rule", counts, mapping, {"stem": stem})


# --- applying mappings ----------------------------------------------------------------------

def compose(first: Mapping[str, str], then: Mapping[str, str]) -> TagMap:
    """`then` after `first`; a tag dropped by either is dropped."""
    return {t: then[m] for t, m in first.items() if m in then}


def apply_map(mapping: Mapping[str, str], tags: Iterable[str]) -> tuple[str, ...]:
    """A query's tags after a mapping: mapped, dropped ones left out, duplicates removed."""
    return tuple(dict.fromkeys(mapping[t] for t in tags if t in mapping))


def count_tags(tag_sets: Iterable[Iterable[str]]) -> dict[str, int]:
    """Query counts of every tag (a tag counts once per query)."""
    counts: dict[str, int] = {}
    for tags in tag_sets:
        for tag in set(tags):
            counts[tag] = counts.get(tag, 0) + 1
    return counts
