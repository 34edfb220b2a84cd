"""The bootstrap as a Beam step whose size does not depend on the target (Self-Instruct and
Ensemble-Instruct grow their machine pools this way).

`Create(range(lanes)) | Reshuffle | ParDo(lane)`: each lane is one work item that runs a
`BootstrapLoop` (pipelines/transforms/bootstrap_loop.py: the loop, its determinism and its
refresh modes) with the generator session loaded once per DoFn instance, so Beam can place
lanes on different (GPU) workers; the lane step carries the generation resource hints. Lane
k draws from its own seed stream and grows its own pool; with more than one lane, one exact
novelty pass (`NoveltyFilter`) over every lane's accepted instructions in (lane, prompt,
position) order makes the union as novel as one loop's output. One lane skips it.

What the lane decides leaves through the same stages as before: heuristic verdicts through
`RouteVerdicts(<instruction stage>)`, novelty verdicts through `RouteVerdicts(<novelty
stage>)`, failed prompts as dead letters of the instruction stage; each decided prompt counts
as one input of the instruction stage and towards the target (pipelines/outputs/targets.py).
Every call goes through `generate_one` (response cache, client, retries) and
`count_outcome` (generator usage), like every other generation step.

Follow-ups (`LaneSpec.followups`: Self-Instruct's classification and instances, Ensemble-
Instruct's instances from its main model) run inside the lane as soon as an instruction is
accepted, so no stage boundary idles the server; each step counts as its own stage (in, ok,
failed, dead letters) exactly as a separate `Generate` step would. With more than one lane, an
instruction the cross-lane pass drops may already have follow-up answers: they are matched to
the surviving instructions, and a step's `orphan` rule says what becomes of the others (an
instance row is rejected as `task_failed_upstream`; without a rule the item is dropped,
because its instruction's own rejection is already on record).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import apache_beam as beam

from filters.verdict import Verdict
from pipelines.generators.generation import GenerationOutcome, GenerationRequest
from pipelines.generators.handler import (
    GeneratorModelHandler,
    count_outcome,
    generate_one,
    request_key,
)
from pipelines.outputs import targets
from pipelines.outputs.progress import PROGRESS
from pipelines.transforms.bootstrap_loop import (
    STOP_FAILING,
    STOP_STALLED,
    BootstrapLoop,
    Decision,
    FollowedUp,
    FollowUpStep,
    Judged,
    PoolPrefix,
    Refresh,
    lane_share,
)
from pipelines.transforms.lane_journal import LaneJournal, lane_id, retry_cost
from pipelines.transforms.novelty import NoveltyFilter
from pipelines.transforms.route import (
    FAILED,
    RouteVerdicts,
    count,
    count_answer,
    count_target,
)
from schemas import FailureRecord, InstructionRecord, Reason

log = logging.getLogger(__name__)

HEURISTICS = "heuristics"
NOVELTY = "novelty"
LANES_STAGE = "lane_novelty"  # the cross-lane pass (only with lanes > 1)


@dataclass(frozen=True)
class LaneSpec:
    """What a recipe plugs into its lanes; everything here is pickled to the workers.

    `request(lane, index, machine)` builds prompt `index` of lane `lane` from the machine
    instructions it may see; `judge(outcome)` yields (record, heuristic verdict) pairs, each
    record carrying its `lane`, `slot` (prompt index) and `position`.
    """

    recipe: str
    generator: str  # model id, for dead letters
    seeds: tuple[str, ...]  # the fixed part of the novelty pool
    request: Callable[[int, int, Sequence[str]], GenerationRequest]
    judge: Callable[[GenerationOutcome], Iterable[Judged]]
    target: int  # accepted instructions wanted (over all lanes)
    max_prompts: int  # prompts allowed (over all lanes)
    lanes: int
    refresh: Refresh
    max_concurrency: int
    threshold: float
    exact_scores: bool
    instruction_stage: str
    novelty_stage: str
    target_name: str  # the config key of the target (its counters' namespace)
    followups: tuple[FollowUpStep, ...] = ()
    stall_after: int | None = None  # stop after this many answers in a row add nothing

    def journal_id(self, lane: int, key: Callable[[GenerationRequest], str]) -> str:
        """The journal lane `lane` reads and writes (`key`: a request's cache key)."""
        first = key(self.request(lane, 0, PoolPrefix([], 0)))
        return lane_id(recipe=self.recipe, stage=self.instruction_stage, lane=lane,
                       lanes=self.lanes, threshold=self.threshold, refresh=self.refresh,
                       exact_scores=self.exact_scores, first_key=first)


def followed_tag(step: int) -> str:
    return f"followed{step}"


def reject_with_instruction(judged: Judged) -> Judged:
    """A follow-up row (record, verdict) whose instruction the cross-lane novelty pass dropped
    after its lane had made the row: rejected with its task, never lost silently."""
    return judged[0], Verdict.drop(Reason.TASK_FAILED_UPSTREAM,
                                   f"its instruction repeats another lane's ({LANES_STAGE})")


def lane_order(record: InstructionRecord) -> tuple[int, int, int]:
    """The cross-lane greedy order: lane, then prompt, then place in the response."""
    return (record.lane or 0, record.slot or 0, record.position or 0)


class _LaneFn(beam.DoFn):
    def __init__(self, handler: GeneratorModelHandler, spec: LaneSpec, progress: str) -> None:
        self._handler = handler
        self._spec = spec
        self._progress = progress
        self._session: Any = None

    def setup(self) -> None:
        self._session = self._handler.load_model()

    def teardown(self) -> None:
        # Never wait here: after a Ctrl-C a pool thread may still be starting a server, and
        # the run must stop it (vllm_server.stop_all), not wait for its model load.
        if self._session is not None:
            self._session.pool.shutdown(wait=False, cancel_futures=True)

    def process(self, lane: int) -> Iterable[Any]:
        spec, session = self._spec, self._session
        caching = session.cache is not None
        target = lane_share(spec.target, spec.lanes, lane)
        key = functools.partial(request_key, session)
        # Without a cache nothing is replayed, so nothing is recorded either.
        journal = (LaneJournal(session.cache.root, spec.journal_id(lane, key))
                   if caching else None)
        # Prompts: the journal decides on failures; follow-ups: the cache's failure records.
        prompt_call = functools.partial(generate_one, session=session, decided=False)
        followup_call = functools.partial(generate_one, session=session)
        loop = BootstrapLoop(
            seeds=spec.seeds, request=functools.partial(spec.request, lane),
            call=prompt_call, judge=spec.judge,
            target=target, max_prompts=lane_share(spec.max_prompts, spec.lanes, lane),
            max_concurrency=spec.max_concurrency, refresh=spec.refresh,
            threshold=spec.threshold, exact_scores=spec.exact_scores,
            followups=spec.followups, followup_call=followup_call,
            key=key, replay=journal.entries if journal else (),
            record=journal.record if journal else None,
            retry_failed=session.retry_failed, stall_after=spec.stall_after)
        name = self._progress if spec.lanes == 1 else f"{self._progress}[{lane}]"
        # Said here, on the worker, not while the graph is built: `instructbeam plan` builds
        # it too, and must not read the cache.
        line = replay_line(name, journal.entries if journal else (), spec,
                           session.retry_failed)
        if line:
            PROGRESS.note(line)
            log.info(line)
        warned = False
        try:
            for event in loop.run(session.pool):
                count_outcome(event.outcome, caching=caching)
                if isinstance(event, Decision):
                    yield from self._decided(event)
                elif isinstance(event, FollowedUp):
                    yield from self._followed(event)
                warning = loop.collapse_warning()
                if warning and not warned:
                    warned = True
                    PROGRESS.note(f"{name}: {warning}")
                PROGRESS.loop(name, accepted=loop.accepted, target=target,
                              in_flight=loop.in_flight, answered=loop.answered,
                              left=loop.requests_left(), warning=warning)
        finally:
            if journal is not None:
                journal.flush()
        if loop.stop_reason == STOP_FAILING:
            count_target(spec.target_name, targets.STOPPED_FAILING)
        if loop.stop_reason == STOP_STALLED:
            count_target(spec.target_name, targets.STOPPED_STALLED)

    def _answered(self, outcome: GenerationOutcome, stage: str) -> FailureRecord | None:
        """Count one of the lane's answers as an input of `stage`, as a `Generate` would."""
        count(stage, "in")
        return count_answer(outcome, recipe=self._spec.recipe, stage=stage,
                            generator=self._spec.generator)

    def _decided(self, decision: Decision) -> Iterable[Any]:
        spec = self._spec
        count_target(spec.target_name, targets.PROMPTS)
        dead = self._answered(decision.outcome, spec.instruction_stage)
        if dead is not None:
            yield beam.pvalue.TaggedOutput(FAILED, dead)
            return
        count_target(spec.target_name, targets.ANSWERS)
        for judged in decision.heuristics:
            count_target(spec.target_name,
                         targets.CANDIDATES if judged[1].keep else targets.DROPPED)
            yield beam.pvalue.TaggedOutput(HEURISTICS, judged)
        for judged in decision.novelty:
            count_target(spec.target_name,
                         targets.NOVEL if judged[1].keep else targets.NOT_NOVEL)
            yield beam.pvalue.TaggedOutput(NOVELTY, judged)

    def _followed(self, done: FollowedUp) -> Iterable[Any]:
        dead = self._answered(done.outcome, self._spec.followups[done.step].stage)
        if dead is not None:
            yield beam.pvalue.TaggedOutput(FAILED, dead)
            return
        for item in done.items:
            yield beam.pvalue.TaggedOutput(followed_tag(done.step), (done.root.id, item))


class LaneOutputs(NamedTuple):
    accepted: beam.PCollection  # InstructionRecord: the machine pool (all lanes)
    failed: beam.PCollection  # FailureRecord: prompts and follow-ups that failed
    rejected: tuple[beam.PCollection, ...]  # heuristics, novelty (, cross-lane novelty)
    followed: tuple[beam.PCollection, ...] = ()  # each follow-up step's items


def _survivors_only(orphan: Callable[[Any], Any] | None
                    ) -> Callable[[tuple[str, dict[str, list[Any]]]], Iterable[Any]]:
    def fn(grouped: tuple[str, dict[str, list[Any]]]) -> Iterable[Any]:
        _, groups = grouped
        if groups["root"]:
            yield from groups["items"]
        elif orphan is not None:
            yield from map(orphan, groups["items"])
    return fn


def _count_lane_duplicate(target: str) -> Callable[[Any], Any]:
    def fn(rejected: Any) -> Any:
        count_target(target, targets.LANE_DUPLICATES)
        return rejected
    return fn


class BootstrapLanes(beam.PTransform):
    """PBegin -> `LaneOutputs`: `spec.lanes` streaming bootstrap loops, constant graph.

    Labels: `Lanes`, `Spread`, `Generate` (the lane step; it gets the handler's resource
    hints), `Heuristics`, `Novelty`, `Followed<i>` per follow-up step, and with lanes > 1
    `AcrossLanes` + `CountDuplicates` (+ `Followed<i>/Match` to the surviving instructions).
    """

    def __init__(self, handler: GeneratorModelHandler, spec: LaneSpec, progress: str) -> None:
        super().__init__()
        self._handler = handler
        self._spec = spec
        self._progress = progress

    def expand(self, pbegin: beam.pvalue.PBegin) -> LaneOutputs:
        spec = self._spec
        lane_step = beam.ParDo(_LaneFn(self._handler, spec, self._progress))
        hints = self._handler.get_resource_hints()
        if hints:
            lane_step = lane_step.with_resource_hints(**hints)
        out = (pbegin
               | "Lanes" >> beam.Create(list(range(spec.lanes)))
               | "Spread" >> beam.Reshuffle()
               | "Generate" >> lane_step.with_outputs(
                   HEURISTICS, NOVELTY, FAILED,
                   *(followed_tag(i) for i in range(len(spec.followups))), main="unused"))
        heuristics = out[HEURISTICS] | "Heuristics" >> RouteVerdicts(spec.instruction_stage,
                                                                      "heuristics")
        novelty = out[NOVELTY] | "Novelty" >> RouteVerdicts(spec.novelty_stage, "rouge_l")
        rejected = [heuristics.rejected, novelty.rejected]
        accepted = novelty.kept
        if spec.lanes > 1:
            across = accepted | "AcrossLanes" >> NoveltyFilter(
                threshold=spec.threshold, pool=spec.seeds, order_by=lane_order,
                stage=LANES_STAGE)
            accepted = across.kept
            rejected.append(across.rejected | "CountDuplicates" >> beam.Map(
                _count_lane_duplicate(spec.target_name)))
        followed = []
        for i, step in enumerate(spec.followups):
            keyed, label = out[followed_tag(i)], f"Followed{i}"
            if spec.lanes == 1:  # every accepted instruction is in the pool
                followed.append(keyed | label >> beam.Values())
                continue
            roots = accepted | f"{label}/Roots" >> beam.Map(lambda r: (r.id, None))
            followed.append(
                {"root": roots, "items": keyed}
                | f"{label}/Match" >> beam.CoGroupByKey()
                | f"{label}/Survivors" >> beam.FlatMap(_survivors_only(step.orphan)))
        return LaneOutputs(accepted, out[FAILED], tuple(rejected), tuple(followed))


def replay_line(name: str, entries: Sequence[Any], spec: LaneSpec, retrying: bool
                ) -> str | None:
    """Before a lane asks anything: what its journal replays, and what `--retry-failed` asks
    again and may cost (or costs now, when it is set). None without a journal."""
    if not entries:
        return None
    cost = retry_cost(entries, spec.refresh, len(spec.followups))
    line = f"{name}: resuming {len(entries)} decided prompts from the cache's lane journal"
    if cost.failed and retrying:
        line += (f"; retrying their {cost.failed} failed prompts may re-ask up to "
                 f"{cost.invalidated} decided prompts that saw the first failure (up to "
                 f"~{cost.calls} calls with follow-ups)")
    elif cost.failed:
        line += (f", {cost.failed} of them failed and stay failed (dead letters); "
                 f"--retry-failed asks them again and may re-ask up to {cost.invalidated} "
                 f"later prompts (up to ~{cost.calls} calls with follow-ups)")
    return line
