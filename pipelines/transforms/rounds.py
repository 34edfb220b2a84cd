"""Wiring shared by Self-Instruct and Ensemble-Instruct: one bootstrap round, one judged stage.

Both recipes grow a machine pool the same way: round r reads the pool accepted by rounds < r
as a side input, prompts the generator, judges the answers with heuristics, and runs the
sequential greedy novelty rule after a GroupByKey so its order is deterministic. The recipes
differ only in the functions they plug in. Labels are ``{prefix}/Start`` … ``{prefix}/GrowPool``
so Dataflow step names stay stable (an update of a running job matches steps by name).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

import apache_beam as beam

from pipelines.outputs import targets
from pipelines.transforms.route import Generate, Judged, Routed, RouteVerdicts, count_target
from schemas import InstructionRecord


class JudgedStage(NamedTuple):
    routed: Routed  # kept records and RejectedRecords
    failed: beam.PCollection  # generation dead letters


def generate_and_judge(requests: beam.PCollection, prefix: str, *, generate: Generate,
                       judge: Callable[[Any], Iterable[Judged]], stage: str, filter_name: str,
                       route_label: str) -> JudgedStage:
    """``{prefix}/Generate`` -> ``{prefix}/Parse`` (judge each answer) -> ``{prefix}/<route>``."""
    answers = requests | f"{prefix}/Generate" >> generate
    routed = (answers.ok
              | f"{prefix}/Parse" >> beam.FlatMap(judge)
              | f"{prefix}/{route_label}" >> RouteVerdicts(stage, filter_name))
    return JudgedStage(routed, answers.failed)


class RoundOutputs(NamedTuple):
    pool: beam.PCollection  # the pool after this round: earlier pool + this round's accepted
    failed: beam.PCollection  # generation dead letters
    rejected: tuple[beam.PCollection, ...]  # heuristics, then novelty


def bootstrap_round(
    p: beam.Pipeline,
    prefix: str,
    round_number: int,
    pool: beam.PCollection,
    *,
    prompts: Callable[..., Iterable[Any]],
    generate: Generate,
    judge: Callable[[Any], Iterable[Judged]],
    greedy: Callable[[Iterable[InstructionRecord], Sequence[InstructionRecord]], list[Judged]],
    instruction_stage: str,
    novelty_stage: str,
    target: str,
) -> RoundOutputs:
    """Wire round ``round_number``.

    ``prompts(round_number, machine_pool=...)`` yields the round's requests; ``judge(answer)``
    yields (record, heuristic verdict) pairs; ``greedy(candidates, machine_pool)`` returns
    (record, novelty verdict) pairs in its decision order. The pool's size is the config
    value named ``target``; what each step sent and decided is counted under that name, so
    the manifest can say why a target was missed (pipelines/outputs/targets.py).
    """

    def counted_prompts(r: int, machine_pool: Sequence[InstructionRecord]) -> list[Any]:
        requests = list(prompts(r, machine_pool=machine_pool))
        count_target(target, targets.PROMPTS, len(requests))
        count_target(target, targets.ROUNDS, int(bool(requests)))
        return requests

    def counted_judge(answer: Any) -> Iterable[Judged]:
        count_target(target, targets.ANSWERS)
        for record, verdict in judge(answer):
            count_target(target, targets.CANDIDATES if verdict.keep else targets.DROPPED)
            yield record, verdict

    def counted_greedy(candidates: Iterable[InstructionRecord],
                       machine_pool: Sequence[InstructionRecord]) -> list[Judged]:
        judged = greedy(candidates, machine_pool)
        for _, verdict in judged:
            count_target(target, targets.NOVEL if verdict.keep else targets.NOT_NOVEL)
        return judged

    requests = (
        p
        | f"{prefix}/Start" >> beam.Create([round_number])
        | f"{prefix}/Prompts" >> beam.FlatMap(counted_prompts,
                                              machine_pool=beam.pvalue.AsList(pool))
    )
    heuristics, failed = generate_and_judge(
        requests, prefix, generate=generate, judge=counted_judge, stage=instruction_stage,
        filter_name="heuristics", route_label="Heuristics")
    novelty = (
        heuristics.kept
        | f"{prefix}/KeyForGreedy" >> beam.Map(lambda rec: (rec.round, rec))
        | f"{prefix}/Gather" >> beam.GroupByKey()
        | f"{prefix}/Greedy" >> beam.FlatMap(
            lambda kv, machine_pool: counted_greedy(kv[1], machine_pool),
            machine_pool=beam.pvalue.AsList(pool))
        | f"{prefix}/Novelty" >> RouteVerdicts(novelty_stage, "rouge_l")
    )
    grown = (pool, novelty.kept) | f"{prefix}/GrowPool" >> beam.Flatten()
    return RoundOutputs(grown, failed, (heuristics.rejected, novelty.rejected))
