"""Explore-Instruct's enrichment: example requests per node and the parse of their answers.

Source: Wan et al. 2023, `enrich_node_samples` (reference/seed-algorithms.md §3.4-3.6). The
paper loops until a node has `enrich_nums[depth]` new examples, forever when the model's
answers do not parse; here each depth gets at most `max_enrich_rounds` rounds (unrolled in
`pipelines.recipes.explore_instruct.build`), each asking for what is still missing in batches of 10.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from filters.explore_parse import DOMAINS, parse_enrich_response
from filters.verdict import Verdict
from pipelines.generators.generation import GenerationOutcome, GenerationRequest
from pipelines.recipes.explore_instruct.config import ExploreInstructRun
from pipelines.recipes.explore_instruct.steps import (
    PROMPT_ENRICH,
    RECIPE,
    STAGE_ENRICH,
    Judged,
    demos,
    example_order,
    example_record,
    primer,
    unparsed_reason,
)
from pipelines.transforms.provenance import Provenance, derive_seed
from prompts import load_prompt
from schemas import InstructionRecord, stable_id
from schemas.tree import Example, TaskNode, TreeView


@dataclass(frozen=True)
class EnrichContext:
    node: TaskNode
    round: int  # 1-based enrich round
    slot: int


def enrich_requests(node: TaskNode, tree: Sequence[TaskNode],
                    enriched: Mapping[str, Sequence[InstructionRecord]],
                    got: Mapping[str, int], round_index: int, cfg: ExploreInstructRun
                    ) -> list[GenerationRequest]:
    """Round `round_index` (1-based) of `enrich_node_samples`: enough requests of
    `num_examples_enrich` examples to cover what the node still lacks.

    Demos come from the prompt's target (the node's parent; the root for itself): its own
    examples plus those it was enriched with (parents are enriched first, as in the paper's
    pre-order walk). `enriched` maps a node id to its enrich examples, [] when it has none
    (Beam's AsMultiMap; a defaultdict(list) in tests).
    """
    ei = cfg.explore_instruct
    have = got.get(node.node_id, 0)
    missing = min(ei.enrich_num(node.depth) - have,
                  ei.max_example_num - len(node.examples) - have)
    if missing <= 0:
        return []
    view = TreeView(tree)
    target = view.parent(node) or node
    pool = list(target.examples) + [
        Example(r.instruction, r.input, r.output)
        for r in sorted(enriched[target.node_id], key=example_order)]
    template = load_prompt(*PROMPT_ENRICH)
    requests = []
    for slot in range(math.ceil(missing / ei.num_examples_enrich)):
        request_id = stable_id(RECIPE, STAGE_ENRICH, node.node_id, round_index, slot)
        prompt = template.render(
            domain=ei.domain, target=target.raw_task_name,
            demos=demos(pool, ei.num_demos, cfg.seed, request_id, "demos"),
            children=repr([c.task_name for c in view.children(target.node_id)]),
            peers=repr([p.task_name for p in view.peers(target)]),
            num_examples=ei.num_examples_enrich, name=node.raw_task_name, reason=node.reason,
            primer=primer(cfg, STAGE_ENRICH))
        requests.append(GenerationRequest(
            request_id=request_id, stage=STAGE_ENRICH, round=node.depth,
            subject_id=node.node_id, prompt=prompt, prompt_ref=template.ref,
            sampling=ei.enrich_sampling.as_request(), seed=derive_seed(cfg.seed, request_id),
            api=ei.api_for("enrich"), context=EnrichContext(node, round_index, slot)))
    return requests


def judge_enrich(outcome: GenerationOutcome, cfg: ExploreInstructRun, provenance: Provenance
                 ) -> list[Judged]:
    """Parse one enrich answer into example rows with the rules' verdicts."""
    assert outcome.completion is not None
    ctx: EnrichContext = outcome.request.context
    node, text = ctx.node, primer(cfg, STAGE_ENRICH) + outcome.completion.text
    parsed = parse_enrich_response(text, outcome.completion.finish_reason,
                                   DOMAINS[cfg.explore_instruct.domain])
    if not parsed:
        reason = unparsed_reason(outcome)
        row = replace(example_record(node.node_id, node.path, STAGE_ENRICH, ctx.round,
                                     ctx.slot, 0, Example("", "", text)),
                      id=stable_id(RECIPE, STAGE_ENRICH, outcome.request.request_id, "none"))
        return [(provenance.stamp(row, outcome), Verdict.drop(reason, "no examples"))]
    return [(provenance.stamp(example_record(node.node_id, node.path, STAGE_ENRICH, ctx.round,
                                             ctx.slot, p.position, p.example), outcome),
             p.verdict) for p in parsed]
