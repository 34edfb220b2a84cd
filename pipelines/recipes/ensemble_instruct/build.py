"""Ensemble-Instruct on Beam: per-type streaming bootstraps, instances, extra outputs, consensus.

Two independent chains, type A (needs an input) and type B (output only), each grown by its
own `BootstrapLanes` (pipelines/transforms/bootstrap.py: streaming loops, decisions in prompt
order, a graph that does not grow with the target). The accepted instructions get one
instance each from the generator, parsed by the valid-format filter.
Every extra model is its own generator (handler, server, identity); its answers are joined to
the instances by instance id with CoGroupByKey, and the consensus is a RouteVerdicts stage.
An instance without every extra answer leaves the consensus as a failure naming the missing
models (the failed request itself is a failure of its extra-output stage).
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import apache_beam as beam

from filters.ensemble import echo_verdict
from filters.ensemble_instructions import paper_rules
from pipelines.errors import InputError
from pipelines.generators.backends import GeneratorIdentity, resolve_identity
from pipelines.generators.handler import GeneratorModelHandler
from pipelines.outputs import targets
from pipelines.recipes.base import BuildContext, RecipeOutputs
from pipelines.recipes.ensemble_instruct import steps
from pipelines.recipes.ensemble_instruct.config import EnsembleInstructRun, ExtraGeneratorConfig
from pipelines.recipes.self_instruct.seeds import SeedTask
from pipelines.settings import GeneratorConfig
from pipelines.transforms.bootstrap import BootstrapLanes, LaneSpec, reject_with_instruction
from pipelines.transforms.bootstrap_loop import FollowUpStep
from pipelines.transforms.filter_chain import apply_filters
from pipelines.transforms.provenance import Provenance
from pipelines.transforms.route import FAILED, RouteVerdicts, count, stage_generator
from schemas import FailureRecord


@dataclass
class ExtraGenerator:
    """An extra model as the pipeline uses it: its config, handler and identity."""

    cfg: ExtraGeneratorConfig
    handler: GeneratorModelHandler
    identity: GeneratorIdentity
    model_identifier: str


@dataclass
class EnsembleInstructOutputs:
    instructions: beam.PCollection  # accepted machine instructions of both types
    instances: beam.PCollection  # the dataset: instances kept by the consensus
    rejected: list[beam.PCollection]
    failed: list[beam.PCollection]


def model_identifier(gen: GeneratorConfig, identity: GeneratorIdentity,
                     main: GeneratorConfig) -> str:
    """Steps with equal generator settings share one loaded session (and so one server)."""
    if gen == main:
        return f"instructbeam-{identity.served_name}"
    digest = hashlib.sha256(json.dumps(asdict(gen), sort_keys=True).encode()).hexdigest()
    return f"instructbeam-{identity.served_name}-{digest[:8]}"


def extra_generators(cfg: EnsembleInstructRun, cache_dir: str | None, endpoint: str | None = None,
                     resource_hints: dict[str, str] | None = None) -> list[ExtraGenerator]:
    out = []
    for extra in cfg.ensemble_instruct.extra_generators:
        identity = resolve_identity(extra.generator)
        handler = GeneratorModelHandler(extra.generator, identity, cache_dir, endpoint=endpoint,
                                        resource_hints=resource_hints,
                                        retry_failed=cfg.cache.retry_failed)
        out.append(ExtraGenerator(extra, handler, identity,
                                  model_identifier(extra.generator, identity, cfg.generator)))
    return out


class _JudgeFn(beam.DoFn):
    """Counts the consensus stage's input units: ok (every answer present) or failed."""

    def __init__(self, names: Sequence[str], cfg: EnsembleInstructRun) -> None:
        self._names = list(names)
        self._cfg = cfg

    def process(self, element: tuple[str, dict[str, list[Any]]]) -> Iterable[Any]:
        _, groups = element
        samples = groups["sample"]
        assert len(samples) == 1, f"instance ids must be unique, got {len(samples)}"
        count(steps.STAGE_ENSEMBLE, "in")
        answers = {n: sorted(groups[f"x:{n}"], key=lambda a: a.request_id)
                   for n in self._names}
        result = steps.judge_ensemble(samples[0], answers, self._names, self._cfg)
        if isinstance(result, FailureRecord):
            count(steps.STAGE_ENSEMBLE, "failed")
            yield beam.pvalue.TaggedOutput(FAILED, result)
            return
        count(steps.STAGE_ENSEMBLE, "ok")
        record, verdict = result
        if verdict.keep:  # kept rows per consensus path; rejections count per reason
            count(steps.STAGE_ENSEMBLE, f"kept/{record.ensemble_path}")
        yield result


def build(p: beam.Pipeline, ctx: BuildContext[EnsembleInstructRun]) -> RecipeOutputs:
    """The recipe's graph: both task types with every extra model, then the filter chain."""
    assert ctx.handler is not None and ctx.inputs.identity is not None
    extras = extra_generators(ctx.cfg, ctx.cache_dir, ctx.endpoint,
                              resource_hints=dict(ctx.resource_hints))
    en = build_ensemble_instruct(p, ctx.cfg, ctx.inputs.seeds, ctx.handler,
                                 ctx.inputs.identity, extras)
    dataset, rejected, failed = apply_filters(en.instances, ctx.cfg.filters,
                                              judge=ctx.judge())
    return RecipeOutputs(dataset, {"instructions": en.instructions},
                         [*en.rejected, *rejected], [*en.failed, *failed])


def build_ensemble_instruct(p: beam.Pipeline, cfg: EnsembleInstructRun, seeds: Sequence[SeedTask],
                            handler: GeneratorModelHandler, identity: GeneratorIdentity,
                            extras: Sequence[ExtraGenerator]) -> EnsembleInstructOutputs:
    ei = cfg.ensemble_instruct
    rules = paper_rules(ei.min_words, ei.max_words)
    provenance = Provenance(identity)

    # Instances from the main model are the lanes' follow-up: made as instructions are accepted.
    instance_step = (FollowUpStep(
        steps.STAGE_INSTANCES, functools.partial(steps.instance_request, cfg=cfg),
        functools.partial(steps.judge_instances, cfg=cfg, provenance=provenance),
        orphan=reject_with_instruction),)
    rejected: list[beam.PCollection] = []
    failed: list[beam.PCollection] = []
    pools: list[beam.PCollection] = []
    judged_instances: list[beam.PCollection] = []
    for kind in steps.TYPES:
        tc = steps.tasks_config(cfg, kind)
        if tc.num_instructions == 0:
            continue
        if not steps.seeds_of_type(seeds, kind):
            raise InputError(f"seed_tasks: no {kind} seed tasks (type "
                             f"{'A' if kind == steps.TYPE_A else 'B'}); set "
                             f"ensemble_instruct.type_{'a' if kind == steps.TYPE_A else 'b'}"
                             f".num_instructions: 0 to skip the type")
        target = targets.ensemble_target("type_a" if kind == steps.TYPE_A else "type_b")
        seed_texts = tuple(s.instruction for s in steps.seeds_of_type(seeds, kind))
        spec = LaneSpec(
            recipe=steps.RECIPE, generator=identity.model, seeds=seed_texts,
            request=functools.partial(steps.instruction_request, seed_texts=seed_texts,
                                      kind=kind, cfg=cfg),
            judge=functools.partial(steps.judge_instruction_response, rules=rules,
                                    provenance=provenance, eos_suffix=ei.eos_suffix),
            target=tc.num_instructions, max_prompts=tc.prompt_budget, lanes=tc.lanes,
            refresh=tc.loop_refresh, max_concurrency=cfg.generator.max_concurrency,
            threshold=ei.rouge_threshold, exact_scores=ei.exact_novelty_scores,
            instruction_stage=steps.STAGE_INSTRUCTIONS, novelty_stage=steps.STAGE_NOVELTY,
            target_name=target, followups=instance_step, stall_after=tc.stall_prompts)
        lanes = p | f"{kind}/Bootstrap" >> BootstrapLanes(
            handler, spec, progress=f"{kind} instructions")
        failed.append(lanes.failed)
        rejected.extend(lanes.rejected)
        pools.append(lanes.accepted)
        judged_instances.extend(lanes.followed)
    instructions = (pools or [p | "NoTypes" >> beam.Create([])]) | "Instructions" >> beam.Flatten()
    parsed = (
        (judged_instances or [p | "NoInstances" >> beam.Create([])])
        | "Instances/Gather" >> beam.Flatten()
        | "Instances/ValidFormat" >> RouteVerdicts(steps.STAGE_INSTANCES, "valid_format"))
    rejected.append(parsed.rejected)
    samples = parsed.kept

    groups = {"sample": samples | "Ensemble/KeySamples" >> beam.Map(lambda r: (r.id, r))}
    for extra in extras:
        name = extra.cfg.name
        answers = (
            samples
            | f"Extra/{name}/Requests" >> beam.Map(steps.extra_request, extra=extra.cfg, cfg=cfg)
            | f"Extra/{name}/Generate" >> stage_generator(
                extra.handler, extra.identity, steps.RECIPE,
                extra.model_identifier)(steps.extra_stage(name))
        )
        failed.append(answers.failed)
        groups[f"x:{name}"] = answers.ok | f"Extra/{name}/Key" >> beam.Map(
            steps.extra_answer, name=name, identity=extra.identity)
    judged = (
        groups
        | "Ensemble/Join" >> beam.CoGroupByKey()
        | "Ensemble/Judge" >> beam.ParDo(
            _JudgeFn([x.cfg.name for x in extras], cfg)).with_outputs(FAILED, main="judged")
    )
    failed.append(judged[FAILED])
    consensus = judged.judged | "Ensemble/Consensus" >> RouteVerdicts(
        steps.STAGE_ENSEMBLE, "rouge_l_consensus")
    rejected.append(consensus.rejected)
    kept = consensus.kept
    if ei.reject_echoes:
        echoes = (kept
                  | "Ensemble/EchoCheck" >> beam.Map(
                      lambda r: (r, echo_verdict(r.instruction, r.input, r.output)))
                  | "Ensemble/Echo" >> RouteVerdicts(steps.STAGE_ECHO, "echo"))
        rejected.append(echoes.rejected)
        kept = echoes.kept
    return EnsembleInstructOutputs(instructions, kept, rejected, failed)
