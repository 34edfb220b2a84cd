"""Statistics of a run's dialogues: the paper's, bar one, and the run's own accounting.

Of what UltraChat's paper reports: dialogues, rounds and turns per dialogue, words per user
and assistant turn, lexical diversity (mean MTLD per dialogue; distinct-1 and distinct-2 over
every turn) and topic diversity (mean pairwise cosine distance of the opening lines'
embeddings, with the MiniLM #InsTag uses; `topic_embedding`). Not here: the paper's
coherence score, which ChatGPT rated per dialogue; the LLM judge of the filter chain
(`filters.scorers.llm_judge`) is the place for such a rubric (README fidelity table). When
the embedder's packages are missing, `topic_diversity` is null and `topic_diversity_note`
says why, never a made-up number. Then: opening lines and dialogues per sector, how kept
dialogues ended, and rejected dialogues per reason. Every
figure is a Beam combiner or a count over the collection, so no worker holds the dataset;
the one report dict is written to `reports/ultrachat.json` and copied into the manifest, and
its `summary` rows are what report.html and the terminal summary show.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable, Iterator
from typing import Any

import apache_beam as beam

from filters.dialogue_stats import (
    DialogueNumbers,
    dialogue_numbers,
    ngrams,
    summarize,
    topic_diversity,
    words,
)
from filters.tag_embeddings import REQUIRES, embedder
from schemas import InstructionRecord, RejectedRecord

REPORT = "ultrachat"
DISTINCT_N = (1, 2)
AsDict, AsList, AsSingleton = beam.pvalue.AsDict, beam.pvalue.AsList, beam.pvalue.AsSingleton


def _numbers(record: InstructionRecord) -> DialogueNumbers:
    return dialogue_numbers(record.messages or (), record.rounds or 0)


def _add(numbers: Iterable[DialogueNumbers]) -> DialogueNumbers:
    total = DialogueNumbers()
    for n in numbers:
        total = total.add(n)
    return total


def _turn_ngrams(record: InstructionRecord, n: int) -> Iterator[str]:
    """The dialogue's distinct n-grams (within a turn), as text."""
    return iter({" ".join(g) for m in record.messages or () for g in ngrams(words(m.content), n)})


def _ngram_total(record: InstructionRecord, n: int) -> int:
    return sum(max(len(words(m.content)) - n + 1, 0) for m in record.messages or ())


def missing_embedder(model: str | None) -> str | None:
    """Why topic diversity cannot be measured here (None: it can)."""
    if model is None:
        return "off (ultrachat.topic_embedding: null)"
    missing = [m for m in REQUIRES.get(model, ()) if importlib.util.find_spec(m) is None]
    if missing:
        return (f"{model} unavailable ({', '.join(missing)} not installed; pip install "
                "'instructbeam[instag]')")
    return None


def opening_line(record: InstructionRecord) -> str:
    """What a dialogue opened with: its first user turn (sector 3: request and passage)."""
    return record.messages[0].content if record.messages else record.instruction


class _EmbedSum(beam.DoFn):
    """A batch of opening lines -> (sum of their unit embeddings, how many)."""

    def __init__(self, model: str) -> None:
        self._model = model

    def process(self, batch: list[InstructionRecord]) -> Iterator[tuple[list[float], int]]:
        vectors = embedder(self._model)([opening_line(r) for r in batch])
        yield [float(v) for v in vectors.sum(axis=0)], len(batch)


def _add_sums(pairs: Iterable[tuple[list[float], int]]) -> tuple[list[float], int]:
    total: list[float] = []
    count = 0
    for vector, n in pairs:
        total = list(vector) if not total else [a + b for a, b in zip(total, vector,
                                                                      strict=True)]
        count += n
    return total, count


def build_report(_: Any, total: DialogueNumbers, distinct: dict[int, tuple[int, int]],
                 rounds: list[tuple[int, int]], openings: list[tuple[str, int]],
                 sectors: list[tuple[str, int]], ends: list[tuple[str, int]],
                 reasons: list[tuple[str, int]], topics: tuple[list[float], int] = ([], 0),
                 topic_model: str | None = None, topic_note: str | None = None
                 ) -> dict[str, Any]:
    """The report dict: the figures, their breakdowns, and `summary` rows to display."""
    figures: dict[str, Any] = dict(summarize(total, distinct))
    figures["topic_diversity"] = None if topic_note else topic_diversity(*topics)
    if figures["topic_diversity"] is None and not topic_note:
        topic_note = f"{topics[1]} opening line(s) kept: a distance needs two"
    report = {**figures,
              "topic_embedding": topic_model,
              **({"topic_diversity_note": topic_note} if topic_note else {}),
              "rounds_histogram": {str(k): v for k, v in sorted(rounds)},
              "openings_by_sector": dict(sorted(openings)),
              "dialogues_by_sector": dict(sorted(sectors)),
              "dialogue_end": dict(sorted(ends)),
              "rejected_by_reason": dict(sorted(reasons, key=lambda kv: (-kv[1], kv[0])))}
    summary = [[name.replace("_", " "), value] for name, value in figures.items()
               if value is not None]
    if topic_note:
        summary.append(["topic diversity", f"not measured: {topic_note}"])
    summary += [[f"opening lines: {k}", v] for k, v in report["openings_by_sector"].items()]
    summary += [[f"dialogues: {k}", v] for k, v in report["dialogues_by_sector"].items()]
    summary += [[f"dialogues with {k} rounds", v] for k, v in report["rounds_histogram"].items()]
    summary += [[f"ended: {k}", v] for k, v in report["dialogue_end"].items()]
    summary += [[f"rejected: {k}", v] for k, v in report["rejected_by_reason"].items()]
    report["summary"] = summary
    return report


def _per_value(items: beam.PCollection, label: str, key: Any) -> beam.PCollection:
    return (items | f"{label}/Key" >> beam.Map(key)
            | f"{label}/Count" >> beam.combiners.Count.PerElement())


class DialogueStatistics(beam.PTransform):
    """(kept dialogues, opening lines, rejected dialogues) -> one (REPORT, dict) element."""

    def __init__(self, openings: beam.PCollection, rejected: beam.PCollection,
                 topic_model: str | None = None) -> None:
        super().__init__()
        self._openings = openings
        self._rejected = rejected
        self._topic_model = topic_model

    def expand(self, dialogues: beam.PCollection) -> beam.PCollection:
        p = dialogues.pipeline
        total = (dialogues | "Numbers" >> beam.Map(_numbers)
                 | "Sum" >> beam.CombineGlobally(_add))
        distinct = []
        for n in DISTINCT_N:
            unique = (dialogues | f"Distinct{n}/Grams" >> beam.FlatMap(_turn_ngrams, n)
                      | f"Distinct{n}/Unique" >> beam.Distinct()
                      | f"Distinct{n}/Count" >> beam.combiners.Count.Globally())
            every = (dialogues | f"Distinct{n}/Each" >> beam.Map(_ngram_total, n)
                     | f"Distinct{n}/All" >> beam.CombineGlobally(sum))
            distinct.append(
                p | f"Distinct{n}/Start" >> beam.Create([n]) | f"Distinct{n}/Pair" >> beam.Map(
                    lambda k, u, a: (k, (u, a)), u=AsSingleton(unique), a=AsSingleton(every)))
        reasons = self._rejected | "Reasons/Key" >> beam.Map(_reason)
        note = missing_embedder(self._topic_model)
        topics: Any = ([], 0)
        if note is None:
            assert self._topic_model is not None
            topics = AsSingleton(
                dialogues | "Topics/Batch" >> beam.BatchElements(min_batch_size=1,
                                                                 max_batch_size=256)
                | "Topics/Embed" >> beam.ParDo(_EmbedSum(self._topic_model))
                | "Topics/Sum" >> beam.CombineGlobally(_add_sums))
        report = p | "Start" >> beam.Create([None]) | "Report" >> beam.Map(
            build_report, total=AsSingleton(total),
            distinct=AsDict(distinct | "Distinct/All" >> beam.Flatten()),
            rounds=AsList(_per_value(dialogues, "Rounds", _rounds)),
            openings=AsList(_per_value(self._openings, "Openings", _sector)),
            sectors=AsList(_per_value(dialogues, "Sectors", _sector)),
            ends=AsList(_per_value(dialogues, "Ends", _end)),
            reasons=AsList(reasons | "Reasons/Count" >> beam.combiners.Count.PerElement()),
            topics=topics, topic_model=self._topic_model, topic_note=note)
        return report | "Named" >> beam.Map(lambda r: (REPORT, r))


def _reason(rejected: RejectedRecord) -> str:
    return rejected.reason


def _rounds(record: InstructionRecord) -> int:
    return record.rounds or 0


def _sector(record: InstructionRecord) -> str:
    return record.sector or "?"


def _end(record: InstructionRecord) -> str:
    return record.dialogue_end or "?"
