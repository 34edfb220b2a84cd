"""#InsTag on Beam: tag queries with an LLM, normalize the tag vocabulary, Cf-D sample N.

Three reusable PTransforms, usable from any Beam pipeline of InstructionRecords:

* `TagQueries`: one generator request per user turn (JSON-schema decoding where the server
  supports it); a conversation's turns are joined back by record id and their tags united.
  Outputs tagged records, rejections (malformed answers, with the raw answer kept) and dead
  letters (failed requests).
* `NormalizeTags`: the paper's four steps. Every statistic is a Beam combiner over the pool
  (tag counts, pool size), so the pool may exceed one machine; what one worker holds is
  vocabulary-sized (the plan: raw tag -> final tag) except step 4's input, the tag sets of
  queries with >= 2 frequent tags, which FP-Growth mines in one worker.
* `ComplexityFirstDiverseSample`: Algorithm 1. The greedy selection is sequential over the
  whole pool, so it runs in one worker after a GroupByKey: it holds (order key, id, tags) of
  every pool query (measured ~700 bytes per query with 5 tags as Python objects: ~0.7 GB per
  million, plus ~0.1 GB of arrays; the selection itself, filters/cfd.py, takes ~3 CPU-seconds
  per million). Only picks leave it; they are joined back to the records by id.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import NamedTuple

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from filters.instag_normalize import (
    NormalizeParams,
    association_min_count,
    plan_association,
    plan_frequency_and_rules,
    plan_semantic,
)
from pipelines.generators.backends import GeneratorIdentity
from pipelines.generators.handler import GeneratorModelHandler
from pipelines.recipes.base import BuildContext, RecipeOutputs
from pipelines.recipes.instag import steps
from pipelines.recipes.instag.config import InsTagConfig, InsTagRun
from pipelines.transforms.dataset_input import input_order
from pipelines.transforms.filter_chain import apply_filters, read_input
from pipelines.transforms.quality import JudgeModel
from pipelines.transforms.route import RouteVerdicts, count, gather_all, stage_generator
from schemas import InstructionRecord

AsList, AsSingleton, AsDict = beam.pvalue.AsList, beam.pvalue.AsSingleton, beam.pvalue.AsDict


class Tagged(NamedTuple):
    tagged: beam.PCollection  # records with tags_open
    rejected: beam.PCollection
    failed: beam.PCollection


class TagQueries(beam.PTransform):
    def __init__(self, handler: GeneratorModelHandler, identity: GeneratorIdentity,
                 cfg: InsTagConfig, seed: int, stage: str = steps.STAGE_TAG) -> None:
        super().__init__()
        self._handler, self._identity = handler, identity
        self._cfg, self._seed, self._stage = cfg, seed, stage

    def expand(self, records: beam.PCollection) -> Tagged:
        answers = (
            records
            | "Requests" >> beam.FlatMap(steps.tag_requests, cfg=self._cfg, seed=self._seed)
            | "Generate" >> stage_generator(
                self._handler, self._identity, steps.RECIPE)(self._stage)
        )
        keyed = records | "ById" >> beam.Map(lambda r: (r.id, r))
        routed = (
            {"record": keyed, "answers": answers.ok | "Answers" >> beam.Map(steps.keyed_answer)}
            | "Join" >> beam.CoGroupByKey()
            | "Judge" >> beam.FlatMap(steps.judge_tagged)
            | "Route" >> RouteVerdicts(self._stage, "tag_answer")
        )
        return Tagged(routed.kept, routed.rejected, answers.failed)


class Normalized(NamedTuple):
    records: beam.PCollection  # records with tags and tag_count
    plan: beam.PCollection  # one filters.instag_normalize.Plan: mapping + per-step counts


def _tag_counts(label: str, records: beam.PCollection, plan=None) -> beam.PCollection:
    """(tag, number of queries holding it) over the pool: a combiner, no single worker."""
    if plan is None:
        tags = records | f"{label}Tags" >> beam.FlatMap(lambda r: set(r.tags_open or ()))
    else:
        tags = records | f"{label}Tags" >> beam.FlatMap(steps.mapped_tags, plan=plan)
    return tags | f"{label}Count" >> beam.combiners.Count.PerElement()


class NormalizeTags(beam.PTransform):
    def __init__(self, params: NormalizeParams, stage: str = steps.STAGE_NORMALIZE) -> None:
        super().__init__()
        self._params, self._stage = params, stage

    def expand(self, tagged: beam.PCollection) -> Normalized:
        params = self._params
        start = tagged.pipeline | "Start" >> beam.Create([None])
        pool = tagged | "PoolSize" >> beam.combiners.Count.Globally()
        raw = _tag_counts("Raw", tagged)
        plan = start | "FrequencyRules" >> beam.Map(
            lambda _, counts, n: plan_frequency_and_rules(dict(counts), n, params),
            counts=AsList(raw), n=AsSingleton(pool))
        counts = _tag_counts("Rule", tagged, AsSingleton(plan))
        plan = plan | "Semantic" >> beam.Map(
            lambda pl, c: plan_semantic(pl, dict(c), params), c=AsList(counts))
        counts = _tag_counts("Semantic", tagged, AsSingleton(plan))
        rows = tagged | "PairRows" >> beam.FlatMap(
            lambda r, pl, c: steps.candidate_row(r, pl, c, association_min_count(pl, params))
            if params.association_aggregation else [],
            pl=AsSingleton(plan), c=AsDict(counts))
        plan = plan | "Association" >> beam.Map(
            lambda pl, c, rs: plan_association(pl, dict(c), rs, params),
            c=AsList(counts), rs=AsList(rows))
        records = tagged | "Apply" >> beam.Map(self._apply, plan=AsSingleton(plan))
        return Normalized(records, plan)

    def _apply(self, record: InstructionRecord, plan) -> InstructionRecord:
        count(self._stage, "produced")
        count(self._stage, "kept")
        return steps.apply_plan(record, plan)


class ComplexityFirstDiverseSample(beam.PTransform):
    """Keep Algorithm 1's N picks (with cfd_pass, cfd_rank); reject the rest with a reason."""

    def __init__(self, n: int, order_key=input_order, stage: str = steps.STAGE_SAMPLE) -> None:
        super().__init__()
        self._n, self._order_key, self._stage = n, order_key, stage

    def expand(self, records: beam.PCollection):
        n, order_key = self._n, self._order_key
        picks = (
            gather_all(records, entry=lambda r: (order_key(r), r.id, r.tags or ()), one="Entries")
            | "Select" >> beam.FlatMap(lambda kv: steps.select(kv[1], n))
        )
        return (
            {"record": records | "ById" >> beam.Map(lambda r: (r.id, r)), "pick": picks}
            | "Join" >> beam.CoGroupByKey()
            | "Judge" >> beam.FlatMap(steps.judge_pick, n=n)
            | "Route" >> RouteVerdicts(self._stage, "cfd")
        )


def instag_report(pool: beam.PCollection, subset: beam.PCollection | None,
                  plan: beam.PCollection, cfg: InsTagConfig) -> beam.PCollection:
    """The run's #InsTag report (one dict), from combiners over the pool and the subset."""
    p = pool.pipeline
    subset = subset if subset is not None else p | "NoSubset" >> beam.Create([])
    tag_counts = (pool | "PoolTags" >> beam.FlatMap(lambda r: r.tags or ())
                  | "PoolTagCounts" >> beam.combiners.Count.PerElement())
    sub_stats = (subset | "SubsetPairs" >> beam.Map(lambda r: (1, r.tag_count or 0))
                 | "SubsetStats" >> beam.CombineGlobally(beam.combiners.TupleCombineFn(sum, sum)))
    return p | "ReportStart" >> beam.Create([None]) | "Report" >> beam.Map(
        lambda x, **kw: steps.build_report(x, kw["plan"], kw["n"], kw["total"], kw["counts"],
                                           kw["sub"], kw["sub_tags"], cfg),
        plan=AsSingleton(plan),
        n=AsSingleton(pool | "PoolSize" >> beam.combiners.Count.Globally()),
        total=AsSingleton(pool | "PoolTagCountsEach" >> beam.Map(lambda r: r.tag_count or 0)
                          | "PoolTagTotal" >> beam.CombineGlobally(sum)),
        counts=AsList(tag_counts), sub=AsSingleton(sub_stats),
        sub_tags=AsList(subset | "SubsetTags" >> beam.FlatMap(lambda r: r.tags or ())
                        | "SubsetDistinct" >> beam.Distinct()))


def build(p: beam.Pipeline, ctx: BuildContext[InsTagRun]) -> RecipeOutputs:
    assert ctx.handler is not None and ctx.inputs.identity is not None
    return build_instag(p, ctx.cfg, ctx.handler, ctx.inputs.identity, ctx.judge())


def build_rows(rows: beam.PCollection, ctx: BuildContext[InsTagRun],
               prefix: str = "") -> RecipeOutputs:
    """Chained after another step (`then:`): its kept rows, already through the filter chain
    every recipe ends with, are tagged, normalized and sampled."""
    assert ctx.handler is not None and ctx.inputs.identity is not None
    return tag_and_sample(RecipeOutputs(rows), ctx.cfg, ctx.handler, ctx.inputs.identity,
                          prefix)


def build_instag(p: beam.Pipeline, cfg: InsTagRun, handler: GeneratorModelHandler,
                 identity: GeneratorIdentity, judge: JudgeModel | None = None
                 ) -> RecipeOutputs:
    """Input dataset -> shared filters -> tag -> normalize -> Cf-D (if sample_size) + report."""
    assert cfg.input is not None
    records = read_input(p, cfg.input)
    dataset, rejected, failed = apply_filters(records, cfg.filters, judge=judge)  # cleaning
    return tag_and_sample(RecipeOutputs(dataset, rejected=rejected, failed=failed), cfg,
                          handler, identity)


def tag_and_sample(outputs: RecipeOutputs, cfg: InsTagRun, handler: GeneratorModelHandler,
                   identity: GeneratorIdentity, prefix: str = "") -> RecipeOutputs:
    """Tag `outputs.dataset`, normalize, Cf-D (if sample_size), report; `prefix` goes before
    the stage names (a chained step)."""
    ig = cfg.instag
    tagged = outputs.dataset | "InsTag/Tag" >> TagQueries(handler, identity, ig, cfg.seed,
                                                          prefix + steps.STAGE_TAG)
    outputs.rejected.append(tagged.rejected)
    outputs.failed.append(tagged.failed)
    normalized = tagged.tagged | "InsTag/Normalize" >> NormalizeTags(
        steps.normalize_params(ig), prefix + steps.STAGE_NORMALIZE)
    dataset, subset = normalized.records, None
    if ig.sample_size is not None:
        sampled = dataset | "InsTag/Sample" >> ComplexityFirstDiverseSample(
            ig.sample_size, stage=prefix + steps.STAGE_SAMPLE)
        dataset = subset = sampled.kept
        outputs.rejected.append(sampled.rejected)
    report = instag_report(normalized.records, subset, normalized.plan, ig)
    outputs.dataset = dataset
    outputs.files["reports"] = (report | "InsTag/Named" >> beam.Map(lambda r: ("instag", r)),
                                WriteReports)
    return outputs


class WriteReports(beam.PTransform):
    """(name, dict) -> <directory>/<name>.json; the manifest copies them under `reports`."""

    def __init__(self, directory: str) -> None:
        super().__init__()
        self._directory = directory

    def expand(self, items: beam.PCollection) -> beam.PCollection:
        directory = self._directory

        def write(item: tuple[str, dict]) -> Iterable[str]:
            name, report = item
            path = FileSystems.join(directory, f"{name}.json")
            text = json.dumps(report, indent=2, ensure_ascii=False) + "\n"
            with FileSystems.create(path, compression_type="uncompressed") as handle:
                handle.write(text.encode("utf-8"))
            yield path

        return items | "Write" >> beam.FlatMap(write)
