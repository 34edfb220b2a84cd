"""Explore-Instruct's exploration and enrichment steps as plain functions over nodes and records.

Source: Wan et al. 2023, `generate_instruction.py` (`extend_node_children`, `enrich_node_samples`,
`encode_prompt`); reference/seed-algorithms.md §3.2-3.5. The Beam assembly
(`pipelines.recipes.explore_instruct.build`) calls these with the tree built so far as a side input.

Example rows keep the order the paper stores a node's examples in through (round, slot,
position): round 0 holds the examples a node came with (given, or from its `extend` answer;
slot = the attempt), round r >= 1 the examples of enrich round r (slot = the request).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from filters.explore_parse import DOMAINS, parse_extend_response
from filters.novelty import NoveltyIndex
from filters.verdict import Verdict
from pipelines.errors import InputError
from pipelines.generators.generation import GenerationOutcome, GenerationRequest
from pipelines.recipes.explore_instruct.config import ExploreExampleConfig, ExploreInstructRun
from pipelines.transforms.provenance import Provenance, derive_seed
from prompts import load_prompt
from schemas import InstructionRecord, Reason, content_hash, stable_id
from schemas.tree import Example, TaskNode, TreeView, formalize_taskname, unique_task_name
from schemas.tree_format import TreeFormatError, given_node_id, read_tree

RECIPE = "explore_instruct"
STAGE_GIVEN = "explore_given"
STAGE_EXTEND = "explore_extend"
STAGE_EXTEND_AHEAD = "explore_extend_ahead"  # generator usage only: early extend attempts
STAGE_NODES = "explore_nodes"
STAGE_ENRICH = "explore_enrich"
STAGE_EXAMPLES = "explore_examples"
STAGE_FILTER = "explore_filter"
STAGE_SAMPLE = "explore_sample"
PROMPT_EXTEND = ("explore_instruct", "extend", 1)
PROMPT_ENRICH = ("explore_instruct", "enrich", 1)

Judged = tuple[InstructionRecord, Verdict]


def initial_tree(cfg: ExploreInstructRun) -> list[TaskNode]:
    """The tree exploration starts from: a loaded tree, or the root and its given subtasks."""
    ei = cfg.explore_instruct
    if ei.tree_dir:
        try:
            return read_tree(ei.tree_dir)
        except TreeFormatError as exc:
            raise InputError(str(exc)) from None
    root_name = formalize_taskname(ei.root_task)
    if not root_name:
        raise InputError(f"explore_instruct.root_task {ei.root_task!r} has no letter or digit")
    root = TaskNode(given_node_id(root_name), None, 0, root_name, ei.root_task,
                    ei.root_description, (), root_name, examples=_given(ei.root_examples))
    nodes, taken = [root], {root_name}
    for i, sub in enumerate(ei.subtasks):
        name = unique_task_name(formalize_taskname(sub.name), taken)
        if not name:
            raise InputError(f"explore_instruct.subtasks[{i}].name {sub.name!r} is not usable")
        taken.add(name)
        nodes.append(TaskNode(given_node_id(name), root.node_id, 1, name, sub.name, sub.reason,
                              (i,), f"{root_name}/{name}", examples=_given(sub.examples)))
    return nodes


def _given(examples: Iterable[ExploreExampleConfig]) -> tuple[Example, ...]:
    """Config examples as stored in a tree: "<noinput>" is an empty input."""
    return tuple(Example(e.instruction, "" if e.input.strip().lower() == "<noinput>"
                         else e.input, e.output) for e in examples)


def example_record(node_id: str, node_path: str, stage: str, round_index: int, slot: int,
                   position: int, example: Example, origin: str = "machine"
                   ) -> InstructionRecord:
    rid = stable_id(RECIPE, stage, node_id, round_index, slot, position, example.instruction,
                    example.input, example.output)
    return InstructionRecord(
        id=rid, content_hash=content_hash(example.instruction, example.input, example.output),
        recipe=RECIPE, stage=stage, round=round_index, instruction=example.instruction,
        input=example.input, output=example.output, origin=origin, task_id=node_id,
        slot=slot, position=position, node_id=node_id, node_path=node_path)


def given_records(nodes: Iterable[TaskNode]) -> list[InstructionRecord]:
    """Examples that come with the given nodes join the per-node filter as they are."""
    return [example_record(n.node_id, n.path, STAGE_GIVEN, 0, 0, i, e, origin="seed")
            for n in nodes for i, e in enumerate(n.examples)]


def example_order(record: InstructionRecord) -> tuple[int, int, int, str]:
    return (record.round, record.slot or 0, record.position or 0, record.id)


def primer(cfg: ExploreInstructRun, stage: str) -> str:
    """The start of the answer written into the prompt when `prime_answers` is set."""
    ei = cfg.explore_instruct
    operation = "extend" if stage == STAGE_EXTEND else "enrich"
    if not ei.prime_answers or ei.api_for(operation) != "completions":
        return ""
    if stage == STAGE_EXTEND:
        return "New subtask:"
    return "Examples:\n###\n" + ("1. " if DOMAINS[ei.domain].numbered else "") + "Instruction:"


def demos(pool: Sequence[Example], k: int, *seed_parts: object) -> list[dict[str, str]]:
    rng = random.Random(derive_seed(*seed_parts))
    return [e.as_dict() for e in rng.sample(list(pool), min(k, len(pool)))]


# --- extend ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class ExtendContext:
    node: TaskNode
    attempt: int
    k: int


def extend_request(node: TaskNode, tree: Sequence[TaskNode], attempt: int, cfg: ExploreInstructRun
                   ) -> list[GenerationRequest]:
    """Attempt `attempt` of the paper's `extend_node_children` loop for one node.

    Nothing is sent once the node has its `extend_nums[depth]` new children or is full; the
    prompt lists the children created by earlier attempts (lookahead on a leaf, backtracking
    on a node that has children: the same prompt). The request carries the node's next
    `extend_ahead` attempts as `ahead`: each is exactly what that attempt sends if the node
    gains no child before it, so its early answer is a cache hit then, and unused otherwise.
    """
    ei = cfg.explore_instruct
    view = TreeView(tree)
    children = view.children(node.node_id)
    got = sum(c.origin == "explored" for c in children)
    if got >= ei.extend_num(node.depth) or len(children) >= ei.max_child_num:
        return []
    last = min(attempt + ei.extend_ahead, ei.max_extend_attempts - 1)
    k = min(max(ei.extend_num(node.depth) - got, ei.min_extend_num),
            ei.max_child_num - len(children))
    ahead = tuple(replace(_extend_one(node, view, children, k, later, cfg),
                          stage=STAGE_EXTEND_AHEAD)
                  for later in range(attempt + 1, last + 1))
    return [replace(_extend_one(node, view, children, k, attempt, cfg), ahead=ahead)]


def _extend_one(node: TaskNode, view: TreeView, children: Sequence[TaskNode], k: int,
                attempt: int, cfg: ExploreInstructRun) -> GenerationRequest:
    """One extend attempt's request: the node, its `children` so far, `k` subtasks asked."""
    ei = cfg.explore_instruct
    parent = view.parent(node) or node
    request_id = stable_id(RECIPE, STAGE_EXTEND, node.node_id, attempt)
    template = load_prompt(*PROMPT_EXTEND)
    prompt = template.render(
        domain=ei.domain, target=node.raw_task_name,
        demos=demos(parent.examples, ei.num_demos, cfg.seed, request_id, "demos"),
        children=repr([c.task_name for c in children]),
        peers=repr([p.task_name for p in view.peers(node)]),
        max_children=ei.max_child_num, n_children=len(children), k=k,
        num_examples=ei.num_examples_extend, primer=primer(cfg, STAGE_EXTEND))
    return GenerationRequest(
        request_id=request_id, stage=STAGE_EXTEND, round=node.depth, subject_id=node.node_id,
        prompt=prompt, prompt_ref=template.ref, sampling=ei.extend_sampling.as_request(),
        seed=derive_seed(cfg.seed, request_id), api=ei.api_for("extend"),
        context=ExtendContext(node, attempt, k))


@dataclass(frozen=True)
class Candidate:
    """A subtask proposed for `parent`: its row, and its examples already judged by the rules."""

    parent: TaskNode
    attempt: int
    position: int
    node_id: str
    raw_task_name: str
    reason: str
    record: InstructionRecord
    examples: tuple[Judged, ...]


def unparsed_reason(outcome: GenerationOutcome) -> Reason:
    """Why an answer gave nothing to keep: it was empty, or it did not parse."""
    assert outcome.completion is not None
    return (Reason.EMPTY_RESPONSE if not outcome.completion.text.strip()
            else Reason.UNPARSABLE_RESPONSE)


def judge_extend(outcome: GenerationOutcome, cfg: ExploreInstructRun, provenance: Provenance
                 ) -> tuple[list[tuple[InstructionRecord, Verdict, Candidate]], list[Judged]]:
    """Parse one extend answer into candidates with verdicts (`explore_extend`), and the
    examples of candidates rejected here (`explore_examples`, rejected upstream)."""
    assert outcome.completion is not None
    ctx: ExtendContext = outcome.request.context
    parent, text = ctx.node, primer(cfg, STAGE_EXTEND) + outcome.completion.text
    subtasks = parse_extend_response(text, outcome.completion.finish_reason,
                                     DOMAINS[cfg.explore_instruct.domain])
    if not subtasks:
        reason = unparsed_reason(outcome)
        row = InstructionRecord(
            id=stable_id(RECIPE, STAGE_EXTEND, outcome.request.request_id, "unparsable"),
            content_hash=content_hash(text), recipe=RECIPE, stage=STAGE_EXTEND,
            round=parent.depth, instruction="", output=text, task_id=parent.node_id,
            slot=ctx.attempt, position=0, node_id=parent.node_id, node_path=parent.path)
        verdict = Verdict.drop(reason, "no 'New subtask:' block")
        empty = Candidate(parent, ctx.attempt, 0, "", "", "", row, ())
        return [(provenance.stamp(row, outcome), verdict, empty)], []
    judged, dropped = [], []
    for sub in subtasks:
        node_id = stable_id(RECIPE, "node", parent.node_id, ctx.attempt, sub.position, sub.name)
        path = f"{parent.path}/{formalize_taskname(sub.name)}"
        row = InstructionRecord(
            id=stable_id(RECIPE, STAGE_EXTEND, node_id), content_hash=content_hash(sub.name),
            recipe=RECIPE, stage=STAGE_EXTEND, round=parent.depth, instruction=sub.name,
            output=sub.reason, task_id=node_id, slot=ctx.attempt, position=sub.position,
            node_id=node_id, node_path=path)
        examples = tuple(
            (provenance.stamp(example_record(node_id, path, STAGE_EXTEND, 0, ctx.attempt,
                                             ex.position, ex.example), outcome), ex.verdict)
            for ex in sub.examples)
        candidate = Candidate(parent, ctx.attempt, sub.position, node_id, sub.name, sub.reason,
                              provenance.stamp(row, outcome), examples)
        judged.append((candidate.record, sub.verdict, candidate))
        if not sub.verdict.keep:
            dropped += upstream_failed(examples, f"subtask {sub.verdict.reason}")
    return judged, dropped


def upstream_failed(examples: Iterable[Judged], detail: str) -> list[Judged]:
    return [(record, Verdict.drop(Reason.TASK_FAILED_UPSTREAM, detail))
            for record, _ in examples]


def place_candidates(candidates: Iterable[Candidate], tree: Sequence[TaskNode],
                     cfg: ExploreInstructRun
                     ) -> tuple[list[tuple[InstructionRecord, Verdict, TaskNode | None]],
                                list[Judged]]:
    """Add one attempt's candidates to the tree in a fixed order (parent in level order,
    position): breadth cap, optional pruning against every name so far, then a unique
    task name (`_0`..`_9` on collision). Returns node verdicts and the examples' verdicts."""
    ei = cfg.explore_instruct
    view = TreeView(tree)
    taken = set(view.task_names)
    n_children = {n.node_id: len(view.children(n.node_id)) for n in view.nodes}
    names = (NoveltyIndex([n.raw_task_name for n in view.nodes], threshold=ei.prune_threshold,
                          exact_scores=True) if ei.prune_during_extension else None)
    nodes: list[tuple[InstructionRecord, Verdict, TaskNode | None]] = []
    examples: list[Judged] = []
    for cand in sorted(candidates, key=lambda c: (c.parent.depth, c.parent.order, c.attempt,
                                                  c.position, c.node_id)):
        parent = view.by_id[cand.parent.node_id]
        verdict, name, score = None, None, None
        if n_children[parent.node_id] >= ei.max_child_num:
            verdict = Verdict.drop(Reason.BREADTH_CAP, f"{parent.task_name} has "
                                   f"{n_children[parent.node_id]} children")
        elif names is not None:
            check = names.check(cand.raw_task_name)
            score = check.score
            if not check.accepted:
                verdict = Verdict.drop(Reason.SIMILAR_TASK_NAME, f"ROUGE-L {score:.4f} to "
                                       f"{check.most_similar!r}", score)
        if verdict is None:
            name = unique_task_name(formalize_taskname(cand.raw_task_name), taken)
            if name is None:
                verdict = Verdict.drop(Reason.DUPLICATE_TASK_NAME, "suffixes _0.._9 taken")
        if verdict is not None or name is None:
            assert verdict is not None
            nodes.append((cand.record, verdict, None))
            examples += upstream_failed(cand.examples, f"subtask {verdict.reason}")
            continue
        path = f"{parent.path}/{name}"
        kept = tuple(Example(r.instruction, r.input, r.output)
                     for r, v in cand.examples if v.keep)
        node = TaskNode(cand.node_id, parent.node_id, parent.depth + 1, name,
                        cand.raw_task_name, cand.reason,
                        parent.order + (n_children[parent.node_id],), path, "explored",
                        kept, cand.attempt)
        n_children[parent.node_id] += 1
        n_children[node.node_id] = 0
        taken.add(name)
        if names is not None:
            names.add(cand.raw_task_name)
        nodes.append((replace(cand.record, node_path=path), Verdict.ok(score), node))
        examples += [(replace(r, node_path=path), v) for r, v in cand.examples]
    return nodes, examples
