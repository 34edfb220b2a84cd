"""The Ensemble-Instruct steps as plain functions over records (the Beam assembly calls these).

Source: Lee et al. 2023, `IBM/ensemble-instruct`: `gen_instructions.py`, `gen_instances.py`,
`sample_instances.py`, `gen_output_zeroshot.py`, `ensemble_output.py`
(reference/seed-algorithms.md §2). Type A tasks need an input, type B tasks do not; each type
has its own seeds, in-context mix, machine pool and instance prompt.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from filters.ensemble import Consensus, consensus
from filters.ensemble_instructions import parse_instruction_response
from filters.ensemble_parse import parse_raw_instances
from filters.self_instruct import InstructionRules
from filters.verdict import Verdict
from pipelines.generators.backends import GeneratorIdentity
from pipelines.generators.generation import GenerationOutcome, GenerationRequest
from pipelines.recipes.ensemble_instruct.config import (
    EnsembleInstructConfig,
    EnsembleInstructRun,
    EnsembleTasksConfig,
    ExtraGeneratorConfig,
)
from pipelines.recipes.self_instruct.seeds import SeedTask
from pipelines.transforms.provenance import (
    Provenance,
    canonical_sampling,
    demo_text,
    derive_seed,
    draw_demos,
)
from prompts import load_prompt
from schemas import FailureRecord, InstructionRecord, content_hash, stable_id

RECIPE = "ensemble_instruct"
STAGE_INSTRUCTIONS = "instruction_gen"
STAGE_NOVELTY = "novelty"
STAGE_INSTANCES = "instance_gen"
STAGE_EXTRA = "extra_output"  # one stage per extra model: "extra_output/<name>"
STAGE_ENSEMBLE = "ensemble"
STAGE_ECHO = "ensemble_echo"  # ours: ensembled outputs that only repeat the task
TYPE_A = "input_output"
TYPE_B = "output_only"
TYPES = (TYPE_A, TYPE_B)
GENERATOR_CANDIDATE = "generator"  # the name of candidate 0 in the ensemble record

_ALGO = "ensemble_instruct"
PROMPT_INSTRUCTIONS = (_ALGO, "instruction_gen", 1)
PROMPT_INSTANCES = {TYPE_A: (_ALGO, "instance_input_output", 1),
                    TYPE_B: (_ALGO, "instance_output_only", 1)}
PROMPT_EXTRA = {"zero_shot": (_ALGO, "extra_zero_shot", 1),
                "few_shot": (_ALGO, "extra_few_shot", 1)}


def tasks_config(cfg: EnsembleInstructRun, kind: str) -> EnsembleTasksConfig:
    ei = cfg.ensemble_instruct
    return ei.type_a if kind == TYPE_A else ei.type_b


def seeds_of_type(seeds: Sequence[SeedTask], kind: str) -> list[SeedTask]:
    """The paper's split: type A iff the seed's first instance has a non-empty input."""
    return [s for s in seeds if (s.instances[0][0] != "") == (kind == TYPE_A)]


def extra_stage(name: str) -> str:
    return f"{STAGE_EXTRA}/{name}"


# --- instruction generation ------------------------------------------------------------------

def instruction_request(lane: int, index: int, machine: Sequence[str],
                        seed_texts: Sequence[str], kind: str, cfg: EnsembleInstructRun
                        ) -> GenerationRequest:
    """Prompt `index` of the type's bootstrap lane `lane`: machine demos first (up to the
    type's count, from `machine`, the pool this prompt may see), then the type's seeds,
    shuffled, as the code samples them."""
    ei = cfg.ensemble_instruct
    tc = tasks_config(cfg, kind)
    template = load_prompt(*PROMPT_INSTRUCTIONS)
    sampling = ei.instruction_sampling.as_request()
    if ei.eos_suffix:  # the paper's API returned the stop string; vLLM does so on request
        sampling["include_stop_str_in_output"] = True
    rng = random.Random(derive_seed(cfg.seed, STAGE_INSTRUCTIONS, kind, "lane", lane, index))
    demos = draw_demos(rng, machine, seed_texts, tc.num_machine_demos,
                       tc.num_prompt_instructions)
    request_id = stable_id(RECIPE, STAGE_INSTRUCTIONS, kind, "lane", lane, index)
    return GenerationRequest(
        request_id=request_id, stage=STAGE_INSTRUCTIONS,
        round=1 + index // tc.prompts_per_round, subject_id=request_id,
        prompt=template.render(instructions=[demo_text(d) for d in demos],
                               end_marker=ei.end_marker),
        prompt_ref=template.ref, sampling=sampling,
        seed=derive_seed(cfg.seed, request_id), context=(kind, lane, index),
    )


def judge_instruction_response(outcome: GenerationOutcome, rules: InstructionRules,
                               provenance: Provenance, eos_suffix: bool
                               ) -> Iterable[tuple[InstructionRecord, Verdict]]:
    req = outcome.request
    assert outcome.completion is not None
    kind, lane, index = req.context
    for piece in parse_instruction_response(outcome.completion.text, rules,
                                            eos_suffix=eos_suffix):
        record_id = stable_id(RECIPE, STAGE_INSTRUCTIONS, kind, "lane", lane, index,
                              piece.position, piece.text)
        record = InstructionRecord(
            id=record_id, content_hash=content_hash(piece.text), recipe=RECIPE,
            stage=STAGE_INSTRUCTIONS, round=req.round, instruction=piece.text,
            task_id=record_id, slot=index, position=piece.position, instance_type=kind,
            lane=lane,
        )
        yield provenance.stamp(record, outcome), piece.verdict


# --- instances ---------------------------------------------------------------------------------

def instance_request(record: InstructionRecord, cfg: EnsembleInstructRun) -> GenerationRequest:
    assert record.instance_type in PROMPT_INSTANCES
    template = load_prompt(*PROMPT_INSTANCES[record.instance_type])
    request_id = stable_id(RECIPE, STAGE_INSTANCES, record.id)
    return GenerationRequest(
        request_id=request_id, stage=STAGE_INSTANCES, round=record.round,
        subject_id=record.id, prompt=template.render(instruction=record.instruction.strip()),
        prompt_ref=template.ref, sampling=cfg.ensemble_instruct.instance_sampling.as_request(),
        seed=derive_seed(cfg.seed, request_id), context=record,
    )


def judge_instances(outcome: GenerationOutcome, cfg: EnsembleInstructRun, provenance: Provenance
                    ) -> Iterable[tuple[InstructionRecord, Verdict]]:
    """The valid-format filter on one response; a rejected row keeps the raw text as output."""
    assert outcome.completion is not None
    task: InstructionRecord = outcome.request.context
    raw = outcome.completion.text
    base = replace(task, stage=STAGE_INSTANCES, rouge_l_max=None, most_similar=None)
    for s in parse_raw_instances(task.instruction, raw,
                                 single_line=cfg.ensemble_instruct.single_line):
        output = s.output if s.verdict.keep else raw
        record = replace(
            base,
            id=stable_id(RECIPE, STAGE_INSTANCES, task.id, s.position, s.instruction, s.input,
                         output),
            content_hash=content_hash(s.instruction, s.input, output),
            instruction=s.instruction, input=s.input, output=output,
            instance_type=s.kind or task.instance_type,
        )
        yield provenance.stamp(record, outcome), s.verdict


# --- extra outputs and the consensus ----------------------------------------------------------

def extra_request(record: InstructionRecord, extra: ExtraGeneratorConfig, cfg: EnsembleInstructRun
                  ) -> GenerationRequest:
    """The paper's zero-shot prompt (`instruction + "\\n" + input`) or our few-shot one."""
    stage = extra_stage(extra.name)
    template = load_prompt(*PROMPT_EXTRA[extra.prompt])
    request_id = stable_id(RECIPE, stage, record.id)
    return GenerationRequest(
        request_id=request_id, stage=stage, round=record.round, subject_id=record.id,
        prompt=template.render(instruction=record.instruction.strip(),
                               input=record.input.strip()),
        prompt_ref=template.ref, sampling=extra.sampling.as_request(),
        seed=derive_seed(cfg.seed, request_id), api=extra.api,
    )


@dataclass(frozen=True)
class ExtraAnswer:
    """One extra model's answer to one instance, with what made it."""

    name: str
    model: str
    revision: str
    text: str
    finish_reason: str | None
    request_id: str
    seed: int
    prompt_ref: str
    sampling: str


def extra_answer(outcome: GenerationOutcome, name: str, identity: GeneratorIdentity
                 ) -> tuple[str, ExtraAnswer]:
    req = outcome.request
    assert outcome.completion is not None
    return req.subject_id, ExtraAnswer(
        name, identity.model, identity.revision, outcome.completion.text,
        outcome.completion.finish_reason, req.request_id, req.seed, req.prompt_ref,
        canonical_sampling(req.sampling))


def missing_outputs_failure(sample: InstructionRecord, problems: Sequence[str]) -> FailureRecord:
    return FailureRecord(
        id=stable_id(RECIPE, "failure", STAGE_ENSEMBLE, sample.id), recipe=RECIPE,
        stage=STAGE_ENSEMBLE, round=sample.round, subject_id=sample.id,
        error_class="missing_extra_output",
        message="cannot ensemble without every extra output: " + "; ".join(problems),
        attempts=0, generator=sample.generator, prompt_ref=sample.prompt_ref,
    )


def judge_ensemble(sample: InstructionRecord, answers: Mapping[str, Sequence[ExtraAnswer]],
                   names: Sequence[str], cfg: EnsembleInstructRun
                   ) -> FailureRecord | tuple[InstructionRecord, Verdict]:
    """Consensus over the generator's output and one answer per extra model (in `names`
    order); an instance lacking an answer is a failure naming the missing models."""
    problems = [f"{n}: {len(answers.get(n, ()))} answers" for n in names
                if len(answers.get(n, ())) != 1]
    if problems:
        return missing_outputs_failure(sample, problems)
    ei = cfg.ensemble_instruct
    chosen = [answers[n][0] for n in names]
    decision = consensus([sample.output] + [a.text for a in chosen], agree_rule=ei.agree_rule,
                         min_pairwise_rouge=ei.min_pairwise_rouge)
    output = decision.output if decision.keep else sample.output
    record = replace(
        sample, stage=STAGE_ENSEMBLE, output=output,
        content_hash=content_hash(sample.instruction, sample.input, output),
        ensemble_path=decision.path.value, ensemble=ensemble_json(decision, sample, chosen, ei),
    )
    return record, decision.verdict()


def ensemble_json(decision: Consensus, sample: InstructionRecord,
                  answers: Sequence[ExtraAnswer], ei: EnsembleInstructConfig) -> str:
    """Every candidate (with provenance), every pairwise score and the decision, as JSON."""
    names = [GENERATOR_CANDIDATE] + [a.name for a in answers]
    candidates = [{"name": GENERATOR_CANDIDATE, "model": sample.generator,
                   "revision": sample.generator_revision, "request_id": sample.request_id,
                   "seed": sample.seed, "prompt_ref": sample.prompt_ref,
                   "sampling": sample.sampling, "finish_reason": sample.finish_reason}]
    candidates += [{"name": a.name, "model": a.model, "revision": a.revision,
                    "request_id": a.request_id, "seed": a.seed, "prompt_ref": a.prompt_ref,
                    "sampling": a.sampling, "finish_reason": a.finish_reason} for a in answers]
    for i, cand in enumerate(candidates):
        cand.update(output=decision.outputs[i], normalized=decision.normalized[i],
                    rouge_l_sum=decision.sums[i])
    payload = {
        "path": decision.path.value,
        "selected": None if decision.selected is None else names[decision.selected],
        "best_sum": names[decision.best],
        "agree_rule": ei.agree_rule,
        "min_pairwise": decision.min_pairwise,
        "threshold": decision.threshold,
        "candidates": candidates,
        "pairwise": [{"a": names[i], "b": names[j], "rouge_l": s}
                     for i, j, s in decision.pairwise],
    }
    return json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
