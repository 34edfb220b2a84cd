"""Self-Instruct on Beam: the streaming bootstrap, then classification and instances.

The bootstrap is `BootstrapLanes` (pipelines/transforms/bootstrap.py): one loop per lane keeps
the generator busy and decides answers in prompt order, so the graph is the same for 40 or
500,000 instructions. Classification and instance generation are the lane's follow-ups: each
accepted instruction is classified, then given instances, inside the loop that accepted it,
sharing its concurrency, while the loop goes on.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import apache_beam as beam

from filters.self_instruct import InstructionRules
from pipelines.generators.backends import GeneratorIdentity
from pipelines.generators.handler import GeneratorModelHandler
from pipelines.outputs import targets
from pipelines.recipes.base import BuildContext, RecipeOutputs
from pipelines.recipes.self_instruct import steps
from pipelines.recipes.self_instruct.config import SelfInstructRun
from pipelines.recipes.self_instruct.seeds import SeedTask
from pipelines.transforms.bootstrap import BootstrapLanes, LaneSpec, reject_with_instruction
from pipelines.transforms.bootstrap_loop import FollowUpStep
from pipelines.transforms.filter_chain import apply_filters
from pipelines.transforms.provenance import Provenance
from pipelines.transforms.route import RouteVerdicts


@dataclass
class SelfInstructOutputs:
    instructions: beam.PCollection  # accepted machine instructions, with the clf flag
    instances: beam.PCollection  # the dataset: kept instances
    rejected: list[beam.PCollection]
    failed: list[beam.PCollection]


def build(p: beam.Pipeline, ctx: BuildContext[SelfInstructRun]) -> RecipeOutputs:
    """The recipe's graph: the bootstrap, then the configured filter chain on its instances."""
    assert ctx.handler is not None and ctx.inputs.identity is not None
    si = build_self_instruct(p, ctx.cfg, ctx.inputs.seeds, ctx.handler, ctx.inputs.identity)
    dataset, rejected, failed = apply_filters(si.instances, ctx.cfg.filters,
                                              judge=ctx.judge())
    return RecipeOutputs(dataset, {"instructions": si.instructions},
                         [*si.rejected, *rejected], [*si.failed, *failed])


def build_self_instruct(p: beam.Pipeline, cfg: SelfInstructRun, seeds: Sequence[SeedTask],
                        handler: GeneratorModelHandler, identity: GeneratorIdentity
                        ) -> SelfInstructOutputs:
    si = cfg.self_instruct
    rules = InstructionRules(min_words=si.min_words, max_words=si.max_words,
                             capitalize=si.capitalize)
    provenance = Provenance(identity)
    followups = (
        FollowUpStep(steps.STAGE_CLF, functools.partial(steps.clf_request, cfg=cfg),
                     steps.apply_clf_answer),
        FollowUpStep(steps.STAGE_INSTANCES, functools.partial(steps.instance_request, cfg=cfg),
                     functools.partial(steps.judge_instances, cfg=cfg, provenance=provenance),
                     orphan=reject_with_instruction),
    )
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
        target_name=targets.SELF_INSTRUCT, followups=followups, stall_after=si.stall_prompts)
    lanes = p | "Bootstrap" >> BootstrapLanes(handler, spec, progress="instructions")
    instructions, instances = lanes.followed
    routed = instances | "Instances/Filter" >> RouteVerdicts(steps.STAGE_INSTANCES,
                                                              "instance_rules")
    return SelfInstructOutputs(instructions, routed.kept, [*lanes.rejected, routed.rejected],
                               [lanes.failed])
