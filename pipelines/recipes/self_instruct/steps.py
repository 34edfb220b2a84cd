"""The Self-Instruct steps as plain functions over records (the Beam assembly calls these).

Source: Wang et al. 2023, `bootstrap_instructions.py`, `identify_clf_or_not.py`,
`generate_instances.py`, `prepare_for_finetuning.py` (reference/seed-algorithms.md §1).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

from filters.self_instruct import (
    InstructionRules,
    parse_instances,
    parse_instruction_response,
    parse_is_classification,
)
from filters.verdict import Verdict
from pipelines.generators.generation import GenerationOutcome, GenerationRequest
from pipelines.recipes.self_instruct.config import SelfInstructConfig, SelfInstructRun
from pipelines.recipes.self_instruct.seeds import SeedTask
from pipelines.settings import SamplingConfig
from pipelines.transforms.provenance import (
    Provenance,
    demo_text,
    derive_seed,
    draw_demos,
)
from prompts import load_prompt
from schemas import InstructionRecord, Reason, content_hash, stable_id

RECIPE = "self_instruct"
STAGE_INSTRUCTIONS = "instruction_gen"
STAGE_NOVELTY = "novelty"
STAGE_CLF = "clf_identify"
STAGE_INSTANCES = "instance_gen"

PROMPT_INSTRUCTIONS = ("self_instruct", "instruction_gen", 1)
PROMPT_CLF = ("self_instruct", "clf_identify", 2)
PROMPT_OUTPUT_FIRST = ("self_instruct", "instance_output_first", 2)
PROMPT_INPUT_FIRST = ("self_instruct", "instance_input_first", 1)


#: New items one instruction prompt may yield: the paper lists 8 demos, leaves item 9 open and
#: stops at item 16, so items 9-15 (7) at most; kept for any number of demos.
MAX_NEW_ITEMS = 7


def item_stops(num_prompt_instructions: int) -> tuple[str, ...]:
    """The paper's stop strings at the item after the last allowed new one.

    With 8 demos that is item 16 ("\\n16", "16.", "16 ."), the paper's hard-coded strings;
    with n demos it is item n + 1 + MAX_NEW_ITEMS, so a prompt with fewer or more demos is
    neither cut short nor let run past the paper's 7 new instructions.
    """
    item = num_prompt_instructions + 1 + MAX_NEW_ITEMS
    return (f"\n{item}", f"{item}.", f"{item} .")


def instruction_request_sampling(si: SelfInstructConfig) -> dict[str, Any]:
    """The request parameters of an instruction prompt: the configured stops + the item stops."""
    sampling = si.instruction_sampling.as_request()
    extra = [s for s in item_stops(si.num_prompt_instructions) if s not in sampling["stop"]]
    sampling["stop"] = sampling["stop"] + extra
    return sampling


def instance_request_sampling(si: SelfInstructConfig, is_classification: bool) -> SamplingConfig:
    """Instance decoding; classification tasks get their own (paper: shorter) token budget.

    The paper chose 300 tokens when any of the 5 tasks in a batched request was a
    classification task; requests here hold one task, so the choice is per task.
    """
    if not is_classification:
        return si.instance_sampling
    return replace(si.instance_sampling, max_tokens=si.clf_instance_max_tokens)


# --- instruction generation ------------------------------------------------------------------

def instruction_request(lane: int, index: int, machine: Sequence[str],
                        seed_texts: Sequence[str], cfg: SelfInstructRun) -> GenerationRequest:
    """Prompt `index` of bootstrap lane `lane`: 8 demos (6 seed + 2 machine once 2 exist, drawn
    from `machine`, the pool this prompt may see), shuffled.

    Request ids and seeds are per (lane, prompt index), so a rerun asks the same questions
    and hits the cache. `round` is the prompt's batch of `prompts_per_round` (the paper's
    refresh unit; with `refresh: window` it only groups prompts for reports).
    """
    si = cfg.self_instruct
    template = load_prompt(*PROMPT_INSTRUCTIONS)
    rng = random.Random(derive_seed(cfg.seed, STAGE_INSTRUCTIONS, "lane", lane, index))
    demos = draw_demos(rng, machine, seed_texts, si.num_machine_demos,
                       si.num_prompt_instructions)
    request_id = stable_id(RECIPE, STAGE_INSTRUCTIONS, "lane", lane, index)
    return GenerationRequest(
        request_id=request_id, stage=STAGE_INSTRUCTIONS,
        round=1 + index // si.prompts_per_round, subject_id=request_id,
        prompt=template.render(instructions=[demo_text(d) for d in demos]),
        prompt_ref=template.ref, sampling=instruction_request_sampling(si),
        seed=derive_seed(cfg.seed, request_id), context=(lane, index),
    )


def judge_instruction_response(outcome: GenerationOutcome, rules: InstructionRules,
                               provenance: Provenance
                               ) -> Iterable[tuple[InstructionRecord, Verdict]]:
    """Parse one response into instruction records, each with its heuristic verdict."""
    req = outcome.request
    assert outcome.completion is not None
    lane, index = req.context
    for piece in parse_instruction_response(outcome.completion.text,
                                            outcome.completion.finish_reason, rules):
        record_id = stable_id(RECIPE, STAGE_INSTRUCTIONS, "lane", lane, index,
                              piece.position, piece.text)
        record = InstructionRecord(
            id=record_id, content_hash=content_hash(piece.text), recipe=RECIPE,
            stage=STAGE_INSTRUCTIONS, round=req.round, instruction=piece.text,
            task_id=record_id, slot=index, position=piece.position, lane=lane,
        )
        yield provenance.stamp(record, outcome), piece.verdict


# --- classification identification ----------------------------------------------------------

def _request_for(record: InstructionRecord, stage: str, prompt_key: tuple[str, str, int],
                 sampling: SamplingConfig, cfg: SelfInstructRun) -> GenerationRequest:
    template = load_prompt(*prompt_key)
    request_id = stable_id(RECIPE, stage, record.id)
    return GenerationRequest(
        request_id=request_id, stage=stage, round=record.round, subject_id=record.id,
        prompt=template.render(instruction=record.instruction.strip()),
        prompt_ref=template.ref, sampling=sampling.as_request(),
        seed=derive_seed(cfg.seed, request_id), context=record,
    )


def clf_request(record: InstructionRecord, cfg: SelfInstructRun) -> GenerationRequest:
    return _request_for(record, STAGE_CLF, PROMPT_CLF, cfg.self_instruct.clf_sampling, cfg)


def apply_clf_answer(outcome: GenerationOutcome) -> list[InstructionRecord]:
    """The instruction with its classification flag (a list: the loop's follow-up results)."""
    assert outcome.completion is not None
    record: InstructionRecord = outcome.request.context
    return [replace(record, is_classification=parse_is_classification(outcome.completion.text))]


# --- instances -------------------------------------------------------------------------------

def instance_request(record: InstructionRecord, cfg: SelfInstructRun) -> GenerationRequest:
    key = PROMPT_OUTPUT_FIRST if record.is_classification else PROMPT_INPUT_FIRST
    sampling = instance_request_sampling(cfg.self_instruct, bool(record.is_classification))
    return _request_for(record, STAGE_INSTANCES, key, sampling, cfg)


def judge_instances(outcome: GenerationOutcome, cfg: SelfInstructRun, provenance: Provenance
                    ) -> Iterable[tuple[InstructionRecord, Verdict]]:
    """Parse one task's instances; a response with none yields one rejected task row."""
    assert outcome.completion is not None
    task: InstructionRecord = outcome.request.context
    parsed = parse_instances(
        outcome.completion.text, outcome.completion.finish_reason,
        is_classification=bool(task.is_classification),
        max_instances=cfg.self_instruct.max_instances_per_task,
        rng_seed=derive_seed(cfg.seed, STAGE_INSTANCES, task.id),
    )
    base = replace(task, stage=STAGE_INSTANCES, rouge_l_max=None, most_similar=None)
    if not parsed:
        record = replace(base, id=stable_id(RECIPE, STAGE_INSTANCES, task.id, "none"),
                         output=outcome.completion.text)
        yield provenance.stamp(record, outcome), Verdict.drop(Reason.NO_INSTANCES)
        return
    for inst in parsed:
        record = replace(
            base,
            id=stable_id(RECIPE, STAGE_INSTANCES, task.id, inst.position, inst.input, inst.output),
            content_hash=content_hash(task.instruction, inst.input, inst.output),
            input=inst.input, output=inst.output,
        )
        yield provenance.stamp(record, outcome), inst.verdict


def seed_record(seed: SeedTask) -> InstructionRecord:
    """A seed task as a pool record (used for reporting and pool statistics)."""
    return InstructionRecord(
        id=stable_id(RECIPE, "seed", seed.id), content_hash=content_hash(seed.instruction),
        recipe=RECIPE, stage="seed", round=0, instruction=seed.instruction, origin="seed",
        task_id=seed.id, is_classification=seed.is_classification,
    )
