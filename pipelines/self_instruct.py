"""Self-Instruct on Beam: R unrolled bootstrap rounds, then classification and instances.

Beam has no loops, so the rounds are unrolled when the graph is built: round r reads the
machine pool accepted by rounds < r as a side input, sends its prompts (none once the target
is met), filters the answers, and runs the sequential-greedy novelty step after a
GroupByKey in a deterministic (slot, position) order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import apache_beam as beam

from filters.self_instruct import InstructionRules
from pipelines import self_instruct_steps as steps
from pipelines.config import RunConfig
from pipelines.handler import GeneratorIdentity, GeneratorModelHandler
from pipelines.seeds import SeedTask
from pipelines.transforms import Generate, RouteVerdicts


@dataclass
class SelfInstructOutputs:
    instructions: beam.PCollection  # accepted machine instructions, with the clf flag
    instances: beam.PCollection  # the dataset: kept instances
    rejected: list[beam.PCollection]
    failed: list[beam.PCollection]


def build_self_instruct(p: beam.Pipeline, cfg: RunConfig, seeds: Sequence[SeedTask],
                        handler: GeneratorModelHandler, identity: GeneratorIdentity
                        ) -> SelfInstructOutputs:
    si = cfg.self_instruct
    rules = InstructionRules(min_words=si.min_words, max_words=si.max_words,
                             capitalize=si.capitalize)
    provenance = steps.Provenance(identity)
    model_identifier = f"instructbeam-{identity.served_name}"

    def generate(stage: str) -> Generate:
        return Generate(handler, stage=stage, recipe=steps.RECIPE, generator=identity.model,
                        model_identifier=model_identifier)

    rejected: list[beam.PCollection] = []
    failed: list[beam.PCollection] = []
    pool = p | "EmptyPool" >> beam.Create([])
    for r in range(1, si.max_rounds + 1):
        prefix = f"Round{r:03d}"
        requests = (
            p
            | f"{prefix}/Start" >> beam.Create([r])
            | f"{prefix}/Prompts" >> beam.FlatMap(
                steps.instruction_requests, machine_pool=beam.pvalue.AsList(pool),
                seeds=seeds, cfg=cfg)
        )
        answers = requests | f"{prefix}/Generate" >> generate(steps.STAGE_INSTRUCTIONS)
        failed.append(answers.failed)
        heuristics = (
            answers.ok
            | f"{prefix}/Parse" >> beam.FlatMap(steps.judge_instruction_response, rules=rules,
                                                provenance=provenance)
            | f"{prefix}/Heuristics" >> RouteVerdicts(steps.STAGE_INSTRUCTIONS, "heuristics")
        )
        rejected.append(heuristics.rejected)
        novelty = (
            heuristics.kept
            | f"{prefix}/KeyForGreedy" >> beam.Map(lambda rec: (rec.round, rec))
            | f"{prefix}/Gather" >> beam.GroupByKey()
            | f"{prefix}/Greedy" >> beam.FlatMap(
                lambda kv, machine_pool: steps.novelty_round(
                    kv[1], machine_pool, seeds, si.rouge_threshold, si.exact_novelty_scores),
                machine_pool=beam.pvalue.AsList(pool))
            | f"{prefix}/Novelty" >> RouteVerdicts(steps.STAGE_NOVELTY, "rouge_l")
        )
        rejected.append(novelty.rejected)
        pool = (pool, novelty.kept) | f"{prefix}/GrowPool" >> beam.Flatten()

    clf = (
        pool
        | "Classify/Requests" >> beam.Map(steps.clf_request, cfg=cfg)
        | "Classify/Generate" >> generate(steps.STAGE_CLF)
    )
    failed.append(clf.failed)
    instructions = clf.ok | "Classify/Apply" >> beam.Map(steps.apply_clf_answer)

    instances = (
        instructions
        | "Instances/Requests" >> beam.Map(steps.instance_request, cfg=cfg)
        | "Instances/Generate" >> generate(steps.STAGE_INSTANCES)
    )
    failed.append(instances.failed)
    routed = (
        instances.ok
        | "Instances/Parse" >> beam.FlatMap(steps.judge_instances, cfg=cfg,
                                            provenance=provenance)
        | "Instances/Filter" >> RouteVerdicts(steps.STAGE_INSTANCES, "instance_rules")
    )
    rejected.append(routed.rejected)
    return SelfInstructOutputs(instructions, routed.kept, rejected, failed)
