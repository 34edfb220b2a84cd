"""Explore-Instruct on Beam: the domain tree grown level by level, then enrich, filter, sample.

Beam has no loops, so the paper's queue is unrolled when the graph is built: depth d
extends every node of depth d (< max_depth) in `max_extend_attempts` attempt steps. Each
attempt reads the tree so far as a side input, so it sees the children earlier attempts
created (and all peers: they were created one level up); its candidates are placed in one
deterministic step (GroupByKey on one key, sorted), which keeps task names unique across the
tree. Nodes that have their children, or are full, send nothing in later attempts. Then every
node is enriched depth by depth (parents first, as the paper's pre-order walk), in up to
`max_enrich_rounds` rounds; the configured filters (`clean`: the rules, optionally novelty
and near duplicates) run over all examples, then they are filtered per node, names pruned,
and the sample drawn in level order: nothing drops a sampled row afterwards, so `data/` is
the sample the tree records. Every Generate step uses the same handler and model_identifier, so the
levels share one generator server.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import apache_beam as beam
from apache_beam.pvalue import AsDict, AsList, AsMultiMap, TaggedOutput

from pipelines.generators.backends import GeneratorIdentity
from pipelines.generators.handler import GeneratorModelHandler
from pipelines.recipes.base import BuildContext, RecipeOutputs
from pipelines.recipes.explore_instruct import enrich, finish, steps
from pipelines.recipes.explore_instruct.config import ExploreInstructRun
from pipelines.transforms.filter_chain import apply_filters
from pipelines.transforms.provenance import Provenance
from pipelines.transforms.route import RouteVerdicts, count, gather_all, stage_generator
from schemas import InstructionRecord

EXAMPLES = "examples"
# The run's filter chain over the example pool: (kept examples, rejected collections).
Clean = Callable[[beam.PCollection], tuple[beam.PCollection, list[beam.PCollection]]]


@dataclass
class ExploreOutputs:
    dataset: beam.PCollection  # sampled examples, with node lineage
    nodes: beam.PCollection  # NodeRow per node of the final tree
    tree_items: beam.PCollection  # what WriteTree needs
    rejected: list[beam.PCollection]
    failed: list[beam.PCollection]


class _JudgeExtendFn(beam.DoFn):
    def __init__(self, cfg: ExploreInstructRun, provenance: Provenance) -> None:
        self._cfg = cfg
        self._provenance = provenance

    def process(self, outcome: Any) -> Iterable[Any]:
        candidates, dropped = steps.judge_extend(outcome, self._cfg, self._provenance)
        yield from candidates
        for item in dropped:
            yield TaggedOutput(EXAMPLES, item)


class _PlaceFn(beam.DoFn):
    def __init__(self, cfg: ExploreInstructRun) -> None:
        self._cfg = cfg

    def process(self, element: tuple[int, Iterable[Any]], tree: list) -> Iterable[Any]:
        nodes, examples = steps.place_candidates(element[1], tree, self._cfg)
        yield from nodes
        for item in examples:
            yield TaggedOutput(EXAMPLES, item)


def build(p: beam.Pipeline, ctx: BuildContext[ExploreInstructRun]) -> RecipeOutputs:
    """The recipe's graph; the filter chain cleans the pool before the sample is drawn."""
    assert ctx.handler is not None and ctx.inputs.identity is not None
    cfg = ctx.cfg

    chain_failed: list[beam.PCollection] = []  # the LLM judge's dead letters, if it runs

    def clean(pool: beam.PCollection) -> tuple[beam.PCollection, list[beam.PCollection]]:
        kept, rejected, failed = apply_filters(pool, cfg.filters, judge=ctx.judge())
        chain_failed.extend(failed)
        return kept, rejected

    ex = build_explore_instruct(p, cfg, ctx.handler, ctx.inputs.identity, clean)
    write_tree = functools.partial(finish.WriteTree,
                                   sample_size=cfg.explore_instruct.sample_size)
    return RecipeOutputs(ex.dataset, {"nodes": ex.nodes}, list(ex.rejected),
                         [*ex.failed, *chain_failed],
                         files={"tree": (ex.tree_items, write_tree)})


def build_explore_instruct(p: beam.Pipeline, cfg: ExploreInstructRun,
                           handler: GeneratorModelHandler, identity: GeneratorIdentity,
                           clean: Clean | None = None) -> ExploreOutputs:
    ei = cfg.explore_instruct
    provenance = Provenance(identity)
    generate = stage_generator(handler, identity, steps.RECIPE)

    rejected: list[beam.PCollection] = []
    failed: list[beam.PCollection] = []
    judged_examples: list[beam.PCollection] = []  # (record, verdict) for explore_examples
    requests_by_node: list[beam.PCollection] = []  # ("<kind>", node_id) for the nodes table
    initial = steps.initial_tree(cfg)
    tree = p | "Tree/Initial" >> beam.Create(initial)

    for depth in range(ei.max_depth):
        frontier = tree | f"Extend/D{depth}/Frontier" >> beam.Filter(
            lambda node, d=depth: node.depth == d)
        for attempt in range(ei.max_extend_attempts):
            prefix = f"Extend/D{depth}/A{attempt}"
            requests = frontier | f"{prefix}/Requests" >> beam.FlatMap(
                steps.extend_request, tree=AsList(tree), attempt=attempt, cfg=cfg)
            requests_by_node.append(requests | f"{prefix}/Count" >> beam.Map(
                lambda r: ("extend_requests", r.subject_id)))
            answers = requests | f"{prefix}/Generate" >> generate(steps.STAGE_EXTEND)
            failed.append(answers.failed)
            parsed = answers.ok | f"{prefix}/Parse" >> beam.ParDo(
                _JudgeExtendFn(cfg, provenance)).with_outputs(EXAMPLES, main="candidates")
            judged_examples.append(parsed[EXAMPLES])
            candidates = parsed.candidates | f"{prefix}/Check" >> RouteVerdicts(
                steps.STAGE_EXTEND, "extend_parse", payload=True)
            rejected.append(candidates.rejected)
            placed = (gather_all(candidates.kept, prefix)
                      | f"{prefix}/Place" >> beam.ParDo(_PlaceFn(cfg), tree=AsList(tree))
                      .with_outputs(EXAMPLES, main="nodes"))
            judged_examples.append(placed[EXAMPLES])
            new_nodes = placed.nodes | f"{prefix}/Tree" >> RouteVerdicts(
                steps.STAGE_NODES, "tree", payload=True)
            rejected.append(new_nodes.rejected)
            tree = (tree, new_nodes.kept) | f"{prefix}/Grow" >> beam.Flatten()

    extension = (judged_examples | "Examples/FromExtend" >> beam.Flatten()
                 | "Examples/ExtendRules" >> RouteVerdicts(steps.STAGE_EXAMPLES, "rules"))
    rejected.append(extension.rejected)
    pool = [extension.kept,
            p | "Given/Create" >> beam.Create(steps.given_records(initial))
            | "Given/Count" >> beam.Map(_count_given)]

    enriched_above = p | "Enrich/None" >> beam.Create([])
    for depth in range(ei.max_depth + 1):
        nodes = tree | f"Enrich/D{depth}/Nodes" >> beam.Filter(
            lambda node, d=depth: node.depth == d)
        kept_here: list[beam.PCollection] = []
        got = p | f"Enrich/D{depth}/NoneYet" >> beam.Create([])
        for round_index in range(1, ei.max_enrich_rounds + 1):
            prefix = f"Enrich/D{depth}/R{round_index}"
            requests = nodes | f"{prefix}/Requests" >> beam.FlatMap(
                enrich.enrich_requests, tree=AsList(tree), enriched=AsMultiMap(enriched_above),
                got=AsDict(got), round_index=round_index, cfg=cfg)
            requests_by_node.append(requests | f"{prefix}/Count" >> beam.Map(
                lambda r: ("enrich_requests", r.subject_id)))
            answers = requests | f"{prefix}/Generate" >> generate(steps.STAGE_ENRICH)
            failed.append(answers.failed)
            routed = (answers.ok
                      | f"{prefix}/Parse" >> beam.FlatMap(enrich.judge_enrich, cfg=cfg,
                                                          provenance=provenance)
                      | f"{prefix}/Rules" >> RouteVerdicts(steps.STAGE_EXAMPLES, "rules"))
            rejected.append(routed.rejected)
            kept_here.append(routed.kept)
            got = (kept_here | f"{prefix}/SoFar" >> beam.Flatten()
                   | f"{prefix}/NodeIds" >> beam.Map(lambda r: r.node_id)
                   | f"{prefix}/Got" >> beam.combiners.Count.PerElement())
        enriched = kept_here | f"Enrich/D{depth}/All" >> beam.Flatten()
        pool.append(enriched)
        requests_by_node.append(enriched | f"Enrich/D{depth}/Tally" >> beam.Map(
            lambda r: ("examples_enriched", r.node_id)))
        enriched_above = enriched | f"Enrich/D{depth}/ByNode" >> beam.Map(
            lambda r: (r.node_id, r))

    examples = pool | "Filter/Pool" >> beam.Flatten()
    if clean is not None:
        examples, dropped = clean(examples)
        rejected += dropped
    seed_texts = (examples | "Filter/Seeds" >> beam.Filter(lambda r: r.origin == "seed")
                  | "Filter/SeedTexts" >> beam.Map(lambda r: r.instruction))
    filtered = (examples
                | "Filter/ByNode" >> beam.Map(lambda r: (r.node_id, r))
                | "Filter/Gather" >> beam.GroupByKey()
                | "Filter/Greedy" >> beam.FlatMap(
                    lambda kv, seeds: finish.filter_node(kv[1], cfg, seeds),
                    seeds=AsList(seed_texts))
                | "Filter/Route" >> RouteVerdicts(steps.STAGE_FILTER, "rouge_l"))
    rejected.append(filtered.rejected)
    pruned = (gather_all(tree, "Prune")
              | "Prune/Names" >> beam.FlatMap(lambda kv: finish.prune_tree(kv[1], cfg)))
    sampled = (gather_all(filtered.kept, "Sample")
               | "Sample/Draw" >> beam.FlatMap(
                   lambda kv, tree, pruned: finish.sample_examples(kv[1], tree, pruned, cfg),
                   tree=AsList(tree), pruned=AsDict(pruned))
               | "Sample/Route" >> RouteVerdicts(steps.STAGE_SAMPLE, "allocation"))
    rejected.append(sampled.rejected)

    tallies = requests_by_node + [
        filtered.kept | "Nodes/Filtered" >> beam.Map(lambda r: ("examples_filtered", r.node_id)),
        sampled.kept | "Nodes/Sampled" >> beam.Map(lambda r: ("examples_sampled", r.node_id))]
    counts = (tallies | "Nodes/Tallies" >> beam.Flatten()
              | "Nodes/Count" >> beam.combiners.Count.PerElement())
    rows = (gather_all(tree, "Nodes")
            | "Nodes/Rows" >> beam.FlatMap(
                lambda kv, counts, pruned: finish.node_rows(kv[1], counts, pruned, cfg),
                counts=AsDict(counts), pruned=AsDict(pruned)))
    tree_items = ((tree | "TreeFiles/Nodes" >> beam.Map(lambda n: ("node", n)),
                   rows | "TreeFiles/Rows" >> beam.Map(lambda r: ("row", r)),
                   filtered.kept | "TreeFiles/Examples" >> beam.Map(lambda r: ("example", r)))
                  | "TreeFiles/All" >> beam.Flatten())
    return ExploreOutputs(sampled.kept, rows, tree_items, rejected, failed)


def _count_given(record: InstructionRecord) -> InstructionRecord:
    count(steps.STAGE_GIVEN, "produced")
    count(steps.STAGE_GIVEN, "kept")
    return record
