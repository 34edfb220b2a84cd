"""Self-Instruct's ROUGE-L novelty rule as a Beam transform: exact, and no worker holds all texts.

Rule: in a defined order, a record is rejected iff its rouge-score ROUGE-L F (no stemmer) with
some EARLIER ACCEPTED record, or with a text of the fixed ``pool`` (e.g. the seed tasks), is
``> threshold``. Decisions equal ``filters.novelty.greedy_novelty`` on the same ordered texts.

Shape of the job (the pure parts live in ``filters.novelty_join``; this file is only wiring):

1. Rarity order: element document frequencies (``Count.PerElement``), gathered into one
   vocabulary-sized side input.
2. Candidate pairs: each text is filed under its prefix elements (``GroupByKey`` by element;
   elements with more than ``hot_key_size`` postings are split into bucket pairs); each group
   scores the pairs it owns exactly. Texts travel only here, once per prefix element.
3. Greedy scan: only pairs scoring ``> threshold`` (ids, order keys, scores; no texts) go to
   one key, are sorted by order key, and the rejected set comes out. Records without any such
   pair never reach this step.
4. Scores: each scored pair whose earlier end was accepted is offered to its later end (a join
   on the earlier node, which also brings that node's text); the best offer per record is
   joined back onto the record.

What is exact, what is a bound:

* decisions: exact (every pair that can score ``> threshold`` is scored with rouge-score's own
  float, see ``filters.novelty_join``);
* rejected rows: ``rouge_l_max`` is the true maximum over the pool and the earlier accepted
  records, ``most_similar`` the earliest text reaching it (same as ``greedy_novelty``);
* kept rows: ``rouge_l_max`` is the best score among the pairs the join scored against the pool
  and earlier accepted records: a LOWER BOUND of the true maximum (always ``<= threshold``),
  ``None``/``None`` when no such pair was scored (e.g. no shared rare word at all).

Worst cases: a group costs O(size^2) and the greedy scan holds every edge (pair above the
threshold) in one place. Hot elements are split, which bounds group size but not total work;
a corpus where most texts are near duplicates of each other (e.g. one text repeated 10K times)
has quadratically many edges, so run exact dedup (``content_hash``) or MinHash first there.

Use from any Beam pipeline::

    import apache_beam as beam
    from pipelines.transforms.novelty import NoveltyFilter

    with beam.Pipeline(runner="FnApiRunner") as p:
        records = p | beam.Create(my_instruction_records)        # InstructionRecord elements
        routed = records | "Novelty" >> NoveltyFilter(
            threshold=0.7, pool=seed_instructions,
            order_by=lambda r: (r.round, r.slot or 0, r.position or 0))
        routed.kept | "Keep" >> beam.Map(print)                 # InstructionRecord
        routed.rejected | "Why" >> beam.Map(print)              # RejectedRecord, not_novel
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import lru_cache
from typing import Any, NamedTuple

import apache_beam as beam
from apache_beam.metrics import Metrics

from filters.novelty_join import (
    POOL,
    RECORD,
    Best,
    Node,
    Posting,
    Prepared,
    RarityOrder,
    ScoredPair,
    greedy_scan,
    pick_best,
    postings,
    prepare,
    split_plan,
    text_elements,
    verify_group,
)
from filters.prefix_bounds import PrefixBounds
from filters.verdict import Verdict
from pipelines.generators.handler import NAMESPACE, metric
from pipelines.transforms.route import Routed, RouteVerdicts, gather_all
from schemas import InstructionRecord, Reason

__all__ = ["FILTER_NAME", "NoveltyFilter"]

FILTER_NAME = "rouge_l"
JOIN = "join"  # diagnostics group: outside ``<ns>/stage/``, so the manifest's accounting ignores it
_EARLIER, _SCORE = ScoredPair._fields.index("earlier"), ScoredPair._fields.index("score")


class _NodeText(NamedTuple):
    node: Node
    order: Any
    text: str


@lru_cache(maxsize=8)
def _bounds(threshold: float) -> PrefixBounds:
    """One ``PrefixBounds`` (and its caches) per threshold per worker process."""
    return PrefixBounds(threshold)


def _record_node(
    record: InstructionRecord, order_by: Callable[[InstructionRecord], object] | None,
) -> _NodeText:
    """A record's node, total order key (its id breaks ties in ``order_by``) and text."""
    key = record.id if order_by is None else order_by(record)
    return _NodeText((RECORD, record.id), (RECORD, key, record.id), record.instruction)


def _prepare(item: _NodeText, rarity: RarityOrder, threshold: float) -> Iterator[Prepared]:
    prep = prepare(item.node, item.order, item.text, rarity, _bounds(threshold))
    if prep is not None:
        yield prep


def _postings(prep: Prepared, splits: dict[int, int], stage: str
              ) -> Iterator[tuple[tuple[int, int, int], tuple[Any, ...]]]:
    """Postings as plain tuples: Beam's default coder encodes those natively (a NamedTuple
    would be pickled per element)."""
    n = 0
    for key, posting in postings(prep, splits):
        n += 1
        yield key, tuple(posting)
    metric(JOIN, stage, "postings", n)


def _verify(keyed: tuple[tuple[int, int, int], Iterable[tuple[Any, ...]]], threshold: float,
            stage: str) -> Iterator[tuple[Any, ...]]:
    """Score the pairs one group owns; ``ScoredPair`` fields as a plain tuple."""
    key, group = keyed
    members = [Posting._make(m) for m in group]
    Metrics.distribution(f"{NAMESPACE}/{JOIN}/{stage}", "group_size").update(len(members))
    if len(members) < 2:
        return
    n = 0
    for pair in verify_group(key, members, _bounds(threshold)):
        n += 1
        yield tuple(pair)
    metric(JOIN, stage, "pairs_scored", n)


def _scan(keyed: tuple[None, Iterable[tuple[Any, ...]]], threshold: float, stage: str
          ) -> Iterator[tuple[Node, float]]:
    """The sequential greedy step (one place): rejected node -> deciding score."""
    edges = [ScoredPair._make(edge) for edge in keyed[1]]
    metric(JOIN, stage, "edges", len(edges))
    for node, edge in greedy_scan(edges, threshold).items():
        yield node, edge.score


def _offer(keyed: tuple[Node, dict[str, list[Any]]]) -> Iterator[tuple[Node, tuple[Any, ...]]]:
    """Offer the earlier node's score (and text) to each later end, if it was accepted."""
    node, joined = keyed
    if joined["rejected"] or not joined["pairs"]:
        return
    texts = joined["text"]
    if len(texts) != 1:
        raise ValueError(f"record id {node[1]!r} occurs {len(texts)} times; ids must be unique")
    for pair in map(ScoredPair._make, joined["pairs"]):
        yield pair.later, (pair.score, pair.earlier_order, node, texts[0])


def _judge(keyed: tuple[Node, dict[str, list[Any]]], threshold: float
           ) -> Iterator[tuple[InstructionRecord, Verdict]]:
    """Join decision and best score back onto the record."""
    node, joined = keyed
    records, rejected, best = joined["record"], joined["rejected"], joined["best"]
    if len(records) != 1:
        raise ValueError(f"record id {node[1]!r} occurs {len(records)} times; ids must be unique")
    found = Best._make(best[0]) if best else None
    score = found.score if found else None
    record = dataclasses.replace(records[0], rouge_l_max=score,
                                 most_similar=found.text if found else None)
    if not rejected:
        yield record, Verdict.ok(score)
        return
    if found is None or found.score != rejected[0]:  # both are the max over accepted partners
        raise RuntimeError(f"novelty join inconsistent for {node!r}: {found!r} vs {rejected!r}")
    yield record, Verdict.drop(Reason.NOT_NOVEL, f"ROUGE-L {found.score:.4f} > {threshold}",
                               found.score)


class _BestOffer(beam.CombineFn):
    """Best offer per record (``pick_best`` on ``Best`` tuples); a CombineFn so that runners
    combine partial results before the shuffle."""

    def create_accumulator(self) -> tuple[Any, ...] | None:
        return None

    def add_input(self, acc: tuple[Any, ...] | None, offer: tuple[Any, ...]
                  ) -> tuple[Any, ...] | None:
        return self._pick(acc, offer)

    def merge_accumulators(self, accs: Iterable[tuple[Any, ...] | None]
                           ) -> tuple[Any, ...] | None:
        best = None
        for acc in accs:
            best = self._pick(best, acc)
        return best

    def extract_output(self, acc: tuple[Any, ...] | None) -> tuple[Any, ...] | None:
        return acc

    @staticmethod
    def _pick(a: tuple[Any, ...] | None, b: tuple[Any, ...] | None) -> tuple[Any, ...] | None:
        if a is None or b is None:
            return b if a is None else a
        best = pick_best([Best._make(a), Best._make(b)])
        return None if best is None else tuple(best)


class NoveltyFilter(beam.PTransform):
    """PCollection[InstructionRecord] -> ``Routed(kept, rejected)`` by the ROUGE-L novelty rule.

    ``order_by(record)`` gives the greedy order (default: the record id); values must be
    mutually comparable and deterministic, ties fall back to the id. ``pool`` texts come before
    every record, are never judged and never output. Record ids must be unique. Kept and
    rejected records carry ``rouge_l_max`` and ``most_similar`` (module docstring: exact for
    rejected rows, a lower bound for kept ones). ``hot_key_size``: elements with more postings
    are split into bucket pairs (speed and memory only, never decisions).
    """

    def __init__(
        self,
        *,
        threshold: float = 0.7,
        order_by: Callable[[InstructionRecord], object] | None = None,
        pool: Sequence[str] = (),
        stage: str = "novelty",
        hot_key_size: int = 2000,
    ) -> None:
        super().__init__()
        PrefixBounds(threshold)  # validates the threshold now, not on a worker
        split_plan((), hot_key_size)  # validates hot_key_size
        self._threshold = threshold
        self._order_by = order_by
        self._pool = tuple(pool)
        self._stage = stage
        self._hot = hot_key_size

    def expand(self, records: beam.PCollection) -> Routed:
        t, stage = self._threshold, self._stage
        texts = self._texts(records)
        rarity = (texts
                  | "Elements" >> beam.FlatMap(lambda item: text_elements(item.text))
                  | "DocFreq" >> beam.combiners.Count.PerElement()
                  | "GatherDocFreq" >> beam.combiners.ToList()
                  | "RarityOrder" >> beam.Map(RarityOrder.from_counts))
        prepared = texts | "Prepare" >> beam.FlatMap(
            _prepare, beam.pvalue.AsSingleton(rarity), t)
        plan = (prepared
                | "PrefixKeys" >> beam.FlatMap(lambda prep: prep.prefix)
                | "KeySizes" >> beam.combiners.Count.PerElement()
                | "HotKeys" >> beam.Filter(lambda kv, hot: kv[1] > hot, self._hot)
                | "GatherHot" >> beam.combiners.ToList()
                | "SplitPlan" >> beam.Map(split_plan, self._hot))
        pairs = (prepared
                 | "Postings" >> beam.FlatMap(_postings, beam.pvalue.AsSingleton(plan), stage)
                 | "ByElement" >> beam.GroupByKey()
                 | "ScorePairs" >> beam.FlatMap(_verify, t, stage))
        edges = pairs | "Edges" >> beam.Filter(lambda pair: pair[_SCORE] > t)
        rejected = (gather_all(edges, one="ToScan", gather="OnePlace")
                    | "GreedyScan" >> beam.FlatMap(_scan, t, stage))
        best = (
            {"pairs": pairs | "ByEarlier" >> beam.Map(lambda pair: (pair[_EARLIER], pair)),
             "rejected": rejected,
             "text": texts | "TextByNode" >> beam.Map(lambda item: (item.node, item.text))}
            | "JoinEarlier" >> beam.CoGroupByKey()
            | "Offer" >> beam.FlatMap(_offer)
            | "BestOffer" >> beam.CombinePerKey(_BestOffer()))
        judged = (
            {"record": records | "ByNode" >> beam.Map(lambda r: ((RECORD, r.id), r)),
             "rejected": rejected,
             "best": best}
            | "JoinBack" >> beam.CoGroupByKey()
            | "Judge" >> beam.FlatMap(_judge, t))
        return judged | "Route" >> RouteVerdicts(stage, FILTER_NAME)

    def _texts(self, records: beam.PCollection) -> beam.PCollection:
        """Records and pool texts as (node, order key, text); pool keys sort first."""
        nodes = records | "RecordNodes" >> beam.Map(_record_node, self._order_by)
        pool = records.pipeline | "PoolNodes" >> beam.Create(
            [_NodeText((POOL, str(i)), (POOL, i), text) for i, text in enumerate(self._pool)])
        return (nodes, pool) | "AllTexts" >> beam.Flatten()
