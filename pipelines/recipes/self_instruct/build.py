"""Self-Instruct on Beam: the streaming bootstrap, then classification and instances.

The bootstrap is `BootstrapLanes` (pipelines/transforms/bootstrap.py): one loop per lane keeps
the generator busy and decides answers in prompt order, so the graph is the same for 40 or
500,000 instructions. Classification and instance generation are ordinary fan-out stages on
the accepted instructions.
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
from pipelines.transforms.bootstrap import BootstrapLanes, LaneSpec, generate_and_judge
from pipelines.transforms.filter_chain import apply_filters
from pipelines.transforms.provenance import Provenance
from pipelines.transforms.quality import JudgeModel
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

    spec = LaneSpec(
        recipe=steps.RECIPE, generator=identity.model,
        seeds=tuple(s.instruction for s in seeds),
        request=functools.partial(steps.instruction_request,
                                  seed_texts=tuple(s.instruction for s in seeds), cfg=cfg),
        judge=functools.partial(steps.judge_instruction_response, rules=rules,
                                provenance=provenance),
        target=si.num_instructions, max_prompts=si.prompt_budget, lanes=si.lanes,
        refresh=si.loop_refresh, max_concurrency=cfg.generator.max_concurrency,
        threshold=si.rouge_threshold, exact_scores=si.exact_novelty_scores,
        instruction_stage=steps.STAGE_INSTRUCTIONS, novelty_stage=steps.STAGE_NOVELTY,
        target_name=targets.SELF_INSTRUCT)
    pool, bootstrap_failed, bootstrap_rejected = p | "Bootstrap" >> BootstrapLanes(
        handler, spec, progress="instructions")
    rejected: list[beam.PCollection] = list(bootstrap_rejected)
    failed: list[beam.PCollection] = [bootstrap_failed]

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
