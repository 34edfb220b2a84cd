"""MinHash LSH near-duplicate filter as a Beam transform shaped for Dataflow.

The pure logic lives in `filters.near_dup`; this shell only distributes it. No step holds an
index of the corpus: records are sketched in batches on any worker, LSH buckets are
`GroupByKey` groups, and only verified links (pairs of ids) meet in one place.

    records ─► batch ─► sketches (id, order key, signature)
      ─► (band key, id) x bands ─► GroupByKey ─► members of buckets shared by 2+ ids
      ─► CoGroupByKey with sketches ─► (band key, sketch) ─► GroupByKey ─► verify in bucket
      ─► links (id, id) ─► CombineGlobally(union-find) ─► (id, cluster)
      ─► CoGroupByKey with sketches ─► GroupByKey(cluster) ─► survivor + Jaccard per member
      ─► CoGroupByKey with records ─► (record, verdict) ─► RouteVerdicts

What is exact: signatures and band keys equal datasketch's; every bucket with at most
`max_bucket_distinct` distinct signatures has every pair checked; byte-identical signatures
are linked without comparison (Jaccard 1.0). The result then equals the straightforward
datasketch run (`bench/near_dup_reference.py`), as the tests check. A bucket with more distinct
signatures than that (thousands of texts sharing 8 hash values but all different) is cut to
O(size x max_bucket_distinct) comparisons: its members are compared with its first
`max_bucket_distinct` signatures in (order key, id) order only; counter `lsh_buckets_truncated`
says when that happened.

Memory bounds: a bucket's sketches (id + num_perm hash values each) sit on one worker; the
connected-components step holds one entry per record that is in some cluster (ids only, never
texts or signatures) — about 100 bytes each, so 10M clustered records need ~1 GB there. Its
combiner runs partially on every worker and merges the partial union-finds, so the links
themselves never travel as one list. Shuffle volume: per record, one small (band key, id)
entry per band (~60 bytes each); its signature travels once to the join, and once more per
shared bucket it belongs to (most records are in none).

Deterministic: union-find roots are the smallest id whatever the merge order, buckets are
sorted before use, and survivors are the smallest (order key, id) — bundle boundaries and
arrival order do not change any output.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import apache_beam as beam

from filters.near_dup import (
    MinHasher,
    MinHashParams,
    NearDupMatch,
    UnionFind,
    assign_clusters,
    band_keys,
    bucket_edges,
    judge,
    record_text,
    signature_from_bytes,
    signature_to_bytes,
)
from pipelines.transforms.route import Routed, RouteVerdicts, count
from schemas import InstructionRecord

FILTER_NAME = "minhash_lsh"
Sketch = tuple[str, Any, bytes]  # (record id, order key, signature bytes)


class _SketchFn(beam.DoFn):
    """A batch of records -> one sketch per record that has words (the rest never cluster)."""

    def __init__(self, params: MinHashParams,
                 order_by: Callable[[InstructionRecord], Any] | None) -> None:
        self._params = params
        self._order_by = order_by
        self._hasher: MinHasher | None = None

    def setup(self) -> None:
        # Built once per DoFn instance: reading the permutations from datasketch costs ~1 ms.
        self._hasher = MinHasher(self._params)

    def process(self, batch: list[InstructionRecord]) -> Iterable[Sketch]:
        assert self._hasher is not None
        fields = self._params.text_fields
        sigs, sizes = self._hasher.signatures_and_sizes([record_text(r, fields) for r in batch])
        for record, sig, size in zip(batch, sigs, sizes, strict=True):
            if size:
                order = self._order_by(record) if self._order_by is not None else 0
                yield record.id, order, signature_to_bytes(sig, self._params)


def _band_entries(sketch: Sketch, params: MinHashParams) -> Iterable[tuple[bytes, str]]:
    for key in band_keys(signature_from_bytes(sketch[2], params), params):
        yield key, sketch[0]


def _shared_buckets(element: tuple[bytes, Iterable[str]]) -> Iterable[tuple[str, bytes]]:
    """A bucket of ids -> (id, bucket key) for each member, if the bucket has two or more."""
    key, ids = element
    members = list(ids)
    if len(members) > 1:
        for rid in members:
            yield rid, key


def _first(values: Iterable[Any]) -> Any:
    """The first value of a CoGroupByKey iterable (not necessarily a list), or None."""
    return next(iter(values), None)


def _bucket_sketches(element: tuple[str, dict[str, Iterable[Any]]]) -> Iterable[tuple[bytes,
                                                                                       Sketch]]:
    rid, joined = element
    sketch = _first(joined["sketch"])
    if sketch is not None:
        order, sig = sketch
        for key in joined["bucket"]:
            yield key, (rid, order, sig)


class _LinkBucketFn(beam.DoFn):
    """One LSH bucket -> verified links between its members (a spanning forest)."""

    def __init__(self, params: MinHashParams, stage: str, max_distinct: int) -> None:
        self._params = params
        self._stage = stage
        self._max_distinct = max_distinct

    def process(self, element: tuple[bytes, Iterable[Sketch]]) -> Iterable[tuple[str, str]]:
        members = list(element[1])
        if len(members) < 2:
            return
        edges, compared, truncated = bucket_edges(members, self._params, self._max_distinct)
        count(self._stage, "lsh_pairs_compared", compared)
        if truncated:
            count(self._stage, "lsh_buckets_truncated")
        yield from edges


class _ComponentsFn(beam.CombineFn):
    """Links -> {id: smallest id of its component}; partial union-finds merge in any order."""

    def create_accumulator(self) -> UnionFind:
        return UnionFind()

    def add_input(self, acc: UnionFind, edge: tuple[str, str]) -> UnionFind:
        acc.union(*edge)
        return acc

    def merge_accumulators(self, accumulators: Iterable[UnionFind]) -> UnionFind:
        it = iter(accumulators)
        merged = next(it)
        for other in it:
            merged.merge(other)
        return merged

    def compact(self, acc: UnionFind) -> UnionFind:
        acc.labels()  # full path compression before the partial result is shipped
        return acc

    def extract_output(self, acc: UnionFind) -> dict[str, str]:
        return acc.labels()


def _clustered_sketch(element: tuple[str, dict[str, Iterable[Any]]]) -> Iterable[tuple[str,
                                                                                        Sketch]]:
    rid, joined = element
    cluster, sketch = _first(joined["cluster"]), _first(joined["sketch"])
    if cluster is not None and sketch is not None:
        order, sig = sketch
        yield cluster, (rid, order, sig)


def _matches(element: tuple[str, Iterable[Sketch]],
             params: MinHashParams) -> Iterable[tuple[str, NearDupMatch]]:
    members = [(rid, order, signature_from_bytes(sig, params)) for rid, order, sig in element[1]]
    yield from assign_clusters(members).items()


def _judged(element: tuple[str, dict[str, Iterable[Any]]]) -> Iterable[tuple[InstructionRecord,
                                                                                Any]]:
    _, joined = element
    match = _first(joined["match"])
    for record in joined["record"]:
        yield judge(record, match)


class NearDuplicateFilter(beam.PTransform):
    """PCollection[InstructionRecord] -> Routed(kept, rejected) by MinHash LSH near duplicates.

    Each cluster of near duplicates keeps its survivor (smallest `order_by(record)`, then id;
    by default the smallest id) and rejects the others with `near_duplicate`, scored by their
    estimated Jaccard to the survivor. Every clustered record, survivor included, carries
    `near_dup_cluster`, `near_dup_survivor` and `near_dup_jaccard`; records in no cluster
    pass through unchanged. Record ids must be unique. Counters go to
    `instructbeam/stage/<stage>` (produced, kept, rejected/near_duplicate, plus
    lsh_pairs_compared and lsh_buckets_truncated).
    """

    def __init__(self, params: MinHashParams | None = None, *, stage: str = "near_dup",
                 order_by: Callable[[InstructionRecord], Any] | None = None,
                 max_bucket_distinct: int = 1000, batch_size: int = 256) -> None:
        super().__init__()
        if max_bucket_distinct < 2:
            raise ValueError(f"max_bucket_distinct must be >= 2, got {max_bucket_distinct}")
        self._params = params or MinHashParams()
        self._stage = stage
        self._order_by = order_by
        self._max_distinct = max_bucket_distinct
        self._batch_size = batch_size

    def expand(self, records: beam.PCollection) -> Routed:
        params = self._params
        sketches = (
            records
            | "Batch" >> beam.BatchElements(min_batch_size=1, max_batch_size=self._batch_size)
            | "Sketch" >> beam.ParDo(_SketchFn(params, self._order_by))
        )
        by_id = sketches | "SketchById" >> beam.Map(lambda s: (s[0], (s[1], s[2])))
        # Bucket ids first (small values, most buckets are singletons and stop here), then
        # bring signatures only to the members of shared buckets.
        shared = (
            sketches
            | "Bands" >> beam.FlatMap(_band_entries, params)
            | "Buckets" >> beam.GroupByKey()
            | "Shared" >> beam.FlatMap(_shared_buckets)
        )
        links = (
            {"bucket": shared, "sketch": by_id}
            | "JoinBuckets" >> beam.CoGroupByKey()
            | "BucketSketches" >> beam.FlatMap(_bucket_sketches)
            | "SharedBuckets" >> beam.GroupByKey()
            | "Link" >> beam.ParDo(_LinkBucketFn(params, self._stage, self._max_distinct))
        )
        clusters = (
            links
            | "Components" >> beam.CombineGlobally(_ComponentsFn())
            | "Labels" >> beam.FlatMap(lambda labels: labels.items())
        )
        matches = (
            {"cluster": clusters, "sketch": by_id}
            | "JoinClusters" >> beam.CoGroupByKey()
            | "ByCluster" >> beam.FlatMap(_clustered_sketch)
            | "Clusters" >> beam.GroupByKey()
            | "Survivors" >> beam.FlatMap(_matches, params)
        )
        keyed = records | "RecordById" >> beam.Map(lambda r: (r.id, r))
        return (
            {"record": keyed, "match": matches}
            | "JoinMatches" >> beam.CoGroupByKey()
            | "Judge" >> beam.FlatMap(_judged)
            | "Route" >> RouteVerdicts(self._stage, FILTER_NAME)
        )
