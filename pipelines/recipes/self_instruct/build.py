"""Self-Instruct on Beam: R unrolled bootstrap rounds, then classification and instances.

Beam has no loops, so the rounds are unrolled when the graph is built: round r reads the
machine pool accepted by rounds < r as a side input, sends its prompts (none once the target
is met), filters the answers, and runs the sequential-greedy novelty step after a
GroupByKey in a deterministic (slot, position) order.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import apache_beam as beam

from filters.self_instruct import InstructionRules
from pipelines.generators.backends import GeneratorIdentity
from pipelines.generators.handler import GeneratorModelHandler
from pipelines.outputs import targets
from pipelines.recipes.base import BuildContext, RecipeOutputs
from pipelines.recipes.self_instruct import steps
from pipelines.recipes.self_instruct.seeds import SeedTask
from pipelines.transforms.filter_chain import apply_filters
from pipelines.transforms.provenance import Provenance, novelty_round
from pipelines.transforms.quality import JudgeModel
from pipelines.transforms.rounds import bootstrap_round, generate_and_judge
from pipelines.transforms.route import stage_generator

if TYPE_CHECKING:  # annotations only: pipelines.config imports the recipe registry
    from pipelines.config import RunConfig


@dataclass
class SelfInstructOutputs:
    instructions: beam.PCollection  # accepted machine instructions, with the clf flag
    instances: beam.PCollection  # the dataset: kept instances
    rejected: list[beam.PCollection]
    failed: list[beam.PCollection]


def build(p: beam.Pipeline, ctx: BuildContext) -> RecipeOutputs:
    """The recipe's graph: the bootstrap, then the configured filter chain on its instances."""
    assert ctx.handler is not None and ctx.inputs.identity is not None
    si = build_self_instruct(p, ctx.cfg, ctx.inputs.seeds, ctx.handler, ctx.inputs.identity)
    dataset, rejected, failed = apply_filters(si.instances, ctx.cfg.filters,
                                              judge=JudgeModel.of(ctx))
    return RecipeOutputs(dataset, {"instructions": si.instructions},
                         [*si.rejected, *rejected], [*si.failed, *failed])


def build_self_instruct(p: beam.Pipeline, cfg: RunConfig, seeds: Sequence[SeedTask],
                        handler: GeneratorModelHandler, identity: GeneratorIdentity
                        ) -> SelfInstructOutputs:
    si = cfg.self_instruct
    rules = InstructionRules(min_words=si.min_words, max_words=si.max_words,
                             capitalize=si.capitalize)
    provenance = Provenance(identity)
    generate = stage_generator(handler, identity, steps.RECIPE)

    rejected: list[beam.PCollection] = []
    failed: list[beam.PCollection] = []
    pool = p | "EmptyPool" >> beam.Create([])
    for r in range(1, si.max_rounds + 1):
        pool, round_failed, round_rejected = bootstrap_round(
            p, f"Round{r:03d}", r, pool,
            prompts=functools.partial(steps.instruction_requests, seeds=seeds, cfg=cfg),
            generate=generate(steps.STAGE_INSTRUCTIONS),
            judge=functools.partial(steps.judge_instruction_response, rules=rules,
                                    provenance=provenance),
            greedy=functools.partial(novelty_round, seeds=seeds,
                                     threshold=si.rouge_threshold,
                                     exact_scores=si.exact_novelty_scores),
            instruction_stage=steps.STAGE_INSTRUCTIONS, novelty_stage=steps.STAGE_NOVELTY,
            target=targets.SELF_INSTRUCT)
        failed.append(round_failed)
        rejected.extend(round_rejected)

    clf = (
        pool
        | "Classify/Requests" >> beam.Map(steps.clf_request, cfg=cfg)
        | "Classify/Generate" >> generate(steps.STAGE_CLF)
    )
    failed.append(clf.failed)
    instructions = clf.ok | "Classify/Apply" >> beam.Map(steps.apply_clf_answer)

    requests = instructions | "Instances/Requests" >> beam.Map(steps.instance_request, cfg=cfg)
    routed, instance_failed = generate_and_judge(
        requests, "Instances", generate=generate(steps.STAGE_INSTANCES),
        judge=functools.partial(steps.judge_instances, cfg=cfg, provenance=provenance),
        stage=steps.STAGE_INSTANCES, filter_name="instance_rules", route_label="Filter")
    failed.append(instance_failed)
    rejected.append(routed.rejected)
    return SelfInstructOutputs(instructions, routed.kept, rejected, failed)
