"""The #InsTag steps as plain functions over records (the Beam assembly in
pipelines/recipes/instag/build.py
calls these): tag requests per user turn, per-conversation judgement of the answers, the
Cf-D selection over gathered entries, and the report.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from filters.cfd import complexity_first_diverse
from filters.instag import apply_map, parse_tag_answer, raw_answer, tag_schema, union_tags
from filters.instag_normalize import NormalizeParams, Plan, association_rows
from filters.verdict import Verdict
from pipelines.generators.generation import GenerationOutcome, GenerationRequest
from pipelines.recipes.instag.config import InsTagConfig
from pipelines.transforms.conversations import user_turns
from pipelines.transforms.provenance import derive_seed
from prompts import load_prompt
from schemas import InstructionRecord, Reason, stable_id

RECIPE = "instag"
STAGE_TAG = "instag_tag"
STAGE_NORMALIZE = "instag_normalize"
STAGE_SAMPLE = "instag_sample"
PROMPT_TAG = ("instag", "tag", 1)


def normalize_params(cfg: InsTagConfig) -> NormalizeParams:
    return NormalizeParams(
        min_tag_count=cfg.min_tag_count, rule_aggregation=cfg.rule_aggregation, stem=cfg.stem,
        semantic_aggregation=cfg.semantic_aggregation, embedding_model=cfg.embedding_model,
        semantic_eps=cfg.semantic_eps, semantic_min_samples=cfg.semantic_min_samples,
        association_aggregation=cfg.association_aggregation, min_support=cfg.min_support,
        min_confidence=cfg.min_confidence)


# --- tagging --------------------------------------------------------------------------------

def query_turns(record: InstructionRecord) -> list[str]:
    """What the tagger reads: each user turn of a conversation (an input row's
    `conversation`, or a chained UltraChat dialogue's `messages`), else instruction (+ input)."""
    if record.conversation:
        return user_turns(record.conversation)
    if record.messages:
        return [m.content for m in record.messages if m.role == "user" and m.content.strip()]
    text = record.instruction.strip()
    if record.input.strip():
        text = f"{text}\n\n{record.input.strip()}"
    return [text] if text else []


def tag_requests(record: InstructionRecord, cfg: InsTagConfig, seed: int
                 ) -> list[GenerationRequest]:
    """One request per user turn, each with its own seed; the schema rides in `extra_body`."""
    template = load_prompt(*PROMPT_TAG)
    extra = None
    if cfg.structured_output:
        schema = tag_schema(cfg.max_tags, cfg.max_tag_chars, cfg.max_explanation_chars)
        extra = {"structured_outputs": {"json": schema}}
    requests = []
    for turn, text in enumerate(query_turns(record)):
        request_id = stable_id(RECIPE, STAGE_TAG, record.id, turn)
        requests.append(GenerationRequest(
            request_id=request_id, stage=STAGE_TAG, round=0, subject_id=record.id,
            prompt=template.render(query=text, assistant_cue=cfg.api == "completions"),
            prompt_ref=template.ref, sampling=cfg.tag_sampling.as_request(),
            seed=derive_seed(seed, request_id), api=cfg.api, context=turn, extra_body=extra,
        ))
    return requests


@dataclass(frozen=True)
class TurnAnswer:
    turn: int
    text: str
    finish_reason: str | None


def keyed_answer(outcome: GenerationOutcome) -> tuple[str, TurnAnswer]:
    assert outcome.completion is not None
    return outcome.request.subject_id, TurnAnswer(
        outcome.request.context, outcome.completion.text, outcome.completion.finish_reason)


def judge_tagged(element: tuple[str, dict[str, Iterable[Any]]]
                 ) -> Iterable[tuple[InstructionRecord, Verdict]]:
    """A query (or conversation) with every turn's answer: its tags, or why it has none.

    A conversation is rejected when any turn's answer is missing (that request failed and is
    a dead letter) or malformed: a partial tag set would understate its complexity. The raw
    answers are kept on the record either way (`tags_raw`).
    """
    _, grouped = element
    answers = sorted(grouped["answers"], key=lambda a: a.turn)
    for record in grouped["record"]:
        turns = len(query_turns(record))
        record = replace(record, recipe=RECIPE,
                         tags_raw=json.dumps([raw_answer(a.text) for a in answers],
                                             ensure_ascii=False))
        if turns == 0:
            yield record, Verdict.drop(Reason.EMPTY_INSTRUCTION, "no user text to tag")
            continue
        if len(answers) < turns:
            yield record, Verdict.drop(
                Reason.TASK_FAILED_UPSTREAM,
                f"{turns - len(answers)} of {turns} tag requests failed (see failed/)")
            continue
        parsed = [parse_tag_answer(a.text, a.finish_reason) for a in answers]
        bad = next((i for i, p in enumerate(parsed) if not p.ok), None)
        if bad is not None:
            assert parsed[bad].reason is not None
            where = f"turn {bad + 1} of {turns}: " if turns > 1 else ""
            yield record, Verdict.drop(parsed[bad].reason, where + parsed[bad].detail)
            continue
        tags = union_tags(p.tags for p in parsed)
        yield replace(record, tags_open=tags), Verdict.ok(float(len(tags)))


# --- normalization glue ---------------------------------------------------------------------

def mapped_tags(record: InstructionRecord, plan: Plan) -> tuple[str, ...]:
    return apply_map(plan.mapping, record.tags_open or ())


def candidate_row(record: InstructionRecord, plan: Plan, counts: dict[str, int],
                  min_count: float) -> list[tuple[str, ...]]:
    row = association_rows(mapped_tags(record, plan), counts, min_count)
    return [row] if row else []


def apply_plan(record: InstructionRecord, plan: Plan) -> InstructionRecord:
    tags = mapped_tags(record, plan)
    return replace(record, tags=tags, tag_count=len(tags))


# --- Cf-D -----------------------------------------------------------------------------------

Entry = tuple[Any, str, tuple[str, ...]]  # (input order key, record id, tags)


def select(entries: Iterable[Entry], n: int) -> list[tuple[str, tuple[int, int]]]:
    """Cf-D over the whole pool in input order (ties by id): (id, (pass, rank)) per pick."""
    ordered = sorted(entries, key=lambda e: (e[0], e[1]))
    picks = complexity_first_diverse([e[2] for e in ordered], n)
    return [(ordered[p.index][1], (p.pass_no, p.rank)) for p in picks]


def judge_pick(element: tuple[str, dict[str, Iterable[Any]]], n: int
               ) -> Iterable[tuple[InstructionRecord, Verdict]]:
    _, grouped = element
    picks = list(grouped["pick"])
    for record in grouped["record"]:
        count = record.tag_count or 0
        if picks:
            pass_no, rank = picks[0]
            yield replace(record, cfd_pass=pass_no, cfd_rank=rank), Verdict.ok(float(count))
        elif count == 0:
            yield record, Verdict.drop(Reason.NO_TAGS, "no tags after normalization", 0.0)
        else:
            yield record, Verdict.drop(Reason.NOT_SAMPLED, f"not among the N={n} Cf-D picks",
                                       float(count))


# --- report ---------------------------------------------------------------------------------

def build_report(_: Any, plan: Plan, pool: int, pool_tag_total: int,
                 tag_counts: Sequence[tuple[str, int]], subset: Sequence[int],
                 subset_tags: Sequence[str], cfg: InsTagConfig) -> dict[str, Any]:
    """Pool vs subset (size, mean tags, coverage), the top tags, and every step's counts."""
    vocab = len(tag_counts)
    top = sorted(tag_counts, key=lambda kv: (-kv[1], kv[0]))[: cfg.top_tags]
    report: dict[str, Any] = {
        "pool": {"queries": pool, "tags": vocab,
                 "mean_tags": round(pool_tag_total / pool, 4) if pool else 0.0},
        "subset": None,
        "top_tags": [[t, c] for t, c in top],
        "normalization": [s.as_dict() for s in plan.steps],
        "association_rules": len(plan.rules),
    }
    if cfg.sample_size is not None:
        size, total = (subset[0], subset[1]) if subset else (0, 0)
        report["subset"] = {
            "requested": cfg.sample_size, "queries": size,
            "mean_tags": round(total / size, 4) if size else 0.0,
            "tags": len(subset_tags),
            "coverage": round(len(subset_tags) / vocab, 4) if vocab else 0.0}
    return report


def format_report(report: dict[str, Any]) -> list[str]:
    """Lines for the end-of-run summary."""
    pool = report["pool"]
    lines = ["", f"  #InsTag pool: {pool['queries']} queries, {pool['tags']} tags, "
                 f"{pool['mean_tags']:.2f} tags/query"]
    sub = report.get("subset")
    if sub is not None:
        lines.append(f"  Cf-D subset:  {sub['queries']} of {sub['requested']} requested, "
                     f"{sub['tags']} tags, {sub['mean_tags']:.2f} tags/query, "
                     f"coverage {100 * sub['coverage']:.1f}%")
    steps = " -> ".join(f"{s['step']} {s['after']} (-{s['removed'] + s['merged']})"
                        for s in report["normalization"])
    if report["normalization"]:
        lines.append(f"  normalization: raw {report['normalization'][0]['before']} -> {steps}")
    if report["top_tags"]:
        lines.append("  most frequent tags: " + ", ".join(
            f"{t} ({c})" for t, c in report["top_tags"][:10]))
    return lines
