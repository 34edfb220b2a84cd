"""The streaming bootstrap loop (Self-Instruct, Ensemble-Instruct): pure core, no Beam.

Why a loop inside one work item and not rounds in the job graph: unrolled rounds made the
graph grow with the target (200 rounds = 10.5 MiB, over Dataflow's limit) and left the server
idle at every round barrier. One `BootstrapLoop` runs one lane: it keeps up to
`max_concurrency` requests in flight and decides their answers strictly in prompt order.

Determinism: prompt *i* is built (its demos drawn) from the machine pool as it stood after
the first `Refresh.visible(i)` prompts were decided, and only once they are; answers are
decided in prompt order (heuristics, then exact ROUGE-L novelty with the incremental
`NoveltyIndex`). So what the loop outputs depends only on the config, the seed and the
answers, never on timing or concurrency, and the response cache replays a run exactly.
Requests sent beyond the stop (they were in flight when the target was met) are never
decided: their answers only reach the cache and the generator usage (`Unused`).

Refresh modes:
* ``window`` W: prompt i sees every decision of prompts < i - W (W = 0: fully sequential).
  At most W + 1 prompts are undecided at once, so W >= max_concurrency - 1 keeps the server
  saturated; the pool a prompt sees is at most W prompts old.
* ``batch`` B: the paper's refresh; the pool changes only every B prompts (B =
  `prompts_per_round`), so at most B requests are in flight and each batch waits for its
  slowest answer.

Follow-ups: what a recipe asks about each accepted instruction (Self-Instruct: classification,
then instances) runs in the same loop, through the same `max_concurrency` slots, as soon as
the instruction is accepted; follow-ups take free slots before new prompts do. So the server
never waits at a stage boundary, and the tail after the last decision is one chain of
follow-ups, not three stages' slowest answers. Follow-ups never change what the loop decides
(their answers are not in any pool), so the output stays independent of timing.

Resume: every decision is handed to `record` (the lane journal,
pipelines/transforms/lane_journal.py, keeps it beside the response cache) as a `DecidedPrompt`:
the answer's cache key and how many instructions it added, or the failure. A rerun passes the
journal back as `replay`: a prompt whose rebuilt request has the recorded key replays its
recorded failure instead of asking again (unless `retry_failed`), and no prompt past the last
recorded one is sent before every recorded one is decided, so a finished run's rerun sends
nothing new. A failure that is replayed would otherwise be asked again, and a success where
the first run had a failure changes the pool every later prompt sees: most of the run would
be paid again and the output would differ. The first request whose key differs from the
journal's (the config changed, or a retried failure now has an answer) ends the replay.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from dataclasses import dataclass, field, replace
from typing import Any, Literal, overload

from filters.novelty import NoveltyIndex
from filters.verdict import Verdict
from pipelines.generators.generation import (
    GenerationOutcome,
    GenerationRequest,
    RecordedFailure,
)
from schemas import InstructionRecord, Reason

Judged = tuple[InstructionRecord, Verdict]

#: A lane whose last this-many decided prompts all failed stops: the generator is down, and
#: sending the rest of the budget into it would only pile up dead letters (a rerun replays
#: them and goes on past them: replayed failures do not count towards this stop).
FAILURES_IN_A_ROW = 50

STOP_TARGET = "target"  # the lane accepted its share of the target
STOP_BUDGET = "max_prompts"  # the lane sent its whole prompt budget
STOP_FAILING = "failing"  # FAILURES_IN_A_ROW prompts failed in a row (replayed ones aside)
STOP_STALLED = "stalled"  # `stall_after` answered prompts in a row accepted nothing

#: The acceptance-rate warning: over the last COLLAPSE_WINDOW answered prompts, the share that
#: added an instruction fell below COLLAPSE_SHARE of the share before them (at least a quarter
#: window of them).
COLLAPSE_WINDOW = 200
COLLAPSE_SHARE = 0.1


@dataclass(frozen=True)
class DecidedPrompt:
    """What the loop decided for one prompt, as its journal keeps it: the request's cache key
    and how many instructions the answer added to the pool, or the failure."""

    key: str
    accepted: int = 0
    failure: RecordedFailure | None = None


@dataclass(frozen=True)
class Refresh:
    """When a prompt may be built and which decisions its pool includes."""

    mode: Literal["window", "batch"]
    size: int  # the window W, or the batch size B

    def __post_init__(self) -> None:
        if self.mode not in ("window", "batch"):
            raise ValueError(f"refresh mode must be window or batch, got {self.mode!r}")
        if self.size < (0 if self.mode == "window" else 1):
            raise ValueError(f"refresh size must be >= {0 if self.mode == 'window' else 1}")

    @classmethod
    def of(cls, mode: Literal["window", "batch"], window: int, per_round: int) -> Refresh:
        """From a config's `refresh`, `refresh_window` and `prompts_per_round`."""
        return cls(mode, window if mode == "window" else per_round)

    def visible(self, index: int) -> int:
        """How many earlier prompts (0 .. n-1) prompt `index` sees decided."""
        if self.mode == "batch":
            return index - index % self.size
        return max(0, index - self.size)


class PoolPrefix(Sequence[str]):
    """The first `size` texts of a growing pool, without copying it (a prompt's view).

    `random.sample` only needs len() and indexing, so drawing demos from a 50K pool costs
    O(demos), not O(pool), per prompt.
    """

    def __init__(self, texts: list[str], size: int) -> None:
        self._texts = texts
        self._size = size

    def __len__(self) -> int:
        return self._size

    @overload
    def __getitem__(self, i: int) -> str: ...

    @overload
    def __getitem__(self, i: slice) -> Sequence[str]: ...

    def __getitem__(self, i: int | slice) -> str | Sequence[str]:
        if isinstance(i, slice):
            return [self._texts[j] for j in range(*i.indices(self._size))]
        if not -self._size <= i < self._size:
            raise IndexError(i)
        return self._texts[i % self._size]


@dataclass(frozen=True)
class Decision:
    """Prompt `index`, decided: its outcome, every parsed piece with its heuristic verdict,
    and the heuristic survivors with their novelty verdicts (in response order)."""

    index: int
    outcome: GenerationOutcome
    heuristics: list[Judged]
    novelty: list[Judged]


@dataclass(frozen=True)
class FollowUpStep:
    """One request per item, run inside the loop: `request(item)` builds it; `results(outcome)`
    turns a successful answer into items (a failed one gives none: it is a dead letter). The
    first step's items are the accepted instruction records; each step's results are the next
    step's items. `orphan(item)`: what an item becomes when a later pass drops its instruction
    (None: it is dropped with it)."""

    stage: str
    request: Callable[[Any], GenerationRequest]
    results: Callable[[GenerationOutcome], Iterable[Any]]
    orphan: Callable[[Any], Any] | None = None


@dataclass(frozen=True)
class FollowedUp:
    """Follow-up step `step` for the accepted instruction `root`, answered: its outcome and
    the items its answer gave (empty when it failed)."""

    step: int
    root: InstructionRecord
    outcome: GenerationOutcome
    items: list[Any] = field(default_factory=list)


@dataclass(frozen=True)
class Unused:
    """An answer that came back after the loop stopped: cached and counted, never decided."""

    outcome: GenerationOutcome


class BootstrapLoop:
    """One lane of a bootstrap: `run()` yields a `Decision` per prompt in prompt order, a
    `FollowedUp` per answered follow-up (in completion order) and an `Unused` per answer beyond
    the stop. Decisions happen on the caller's thread (Beam counters only count there); `call`
    runs on `executor`'s threads and must be thread-safe.

    `request(index, machine)` builds prompt `index` from `machine`, the accepted machine
    instructions it may see (a `PoolPrefix`); `judge(outcome)` parses an answer into records
    with heuristic verdicts. The novelty rule: ROUGE-L (no stemmer) > `threshold` against
    `seeds` + every machine instruction accepted before, sequential greedy.
    """

    def __init__(self, *, seeds: Sequence[str],
                 request: Callable[[int, Sequence[str]], GenerationRequest],
                 call: Callable[[GenerationRequest], GenerationOutcome],
                 judge: Callable[[GenerationOutcome], Iterable[Judged]],
                 target: int, max_prompts: int, max_concurrency: int, refresh: Refresh,
                 threshold: float, exact_scores: bool = True,
                 followups: Sequence[FollowUpStep] = (),
                 followup_call: Callable[[GenerationRequest], GenerationOutcome] | None = None,
                 key: Callable[[GenerationRequest], str] | None = None,
                 replay: Sequence[DecidedPrompt] = (),
                 record: Callable[[int, DecidedPrompt], None] | None = None,
                 retry_failed: bool = False, stall_after: int | None = None) -> None:
        """`followup_call`: how follow-ups are asked (default: `call`; a caller may record
        their failures differently from the prompts'). `key(request)`: its cache key
        (needed with `replay` or `record`). `replay`: the decisions an earlier run
        recorded, by prompt index; `record(index, decided)` is called for every decision.
        `stall_after`: stop once that many answered prompts in a row added nothing to the
        pool (None: never)."""
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be >= 1")
        if (replay or record) and key is None:
            raise ValueError("replaying or recording decisions needs the requests' key")
        self._seeds = list(seeds)
        self._request = request
        self._call = call
        self._judge = judge
        self._target = target
        self._max_prompts = max_prompts
        self._concurrency = max_concurrency
        self._refresh = refresh
        self._threshold = threshold
        self._exact = exact_scores
        self._followups = tuple(followups)
        self._followup_call = followup_call or call
        self._key = key
        self._replay = list(replay)
        self._replaying = len(self._replay)  # prompts below this index follow the journal
        self._record = record
        self._retry_failed = retry_failed
        self._stall_after = stall_after
        self._queued: deque[tuple[int, InstructionRecord, Any]] = deque()
        self._running: dict[Future[GenerationOutcome], tuple[int, InstructionRecord]] = {}
        self._early_yield: dict[int, int] = {}  # answered, undecided prompt -> heuristic keeps
        self.machine: list[str] = []  # accepted machine instructions, in decision order
        self._followups_answered = 0
        self._unused = 0  # answers that came back after the stop
        self.decided = 0
        self.sent = 0
        self.in_flight = 0
        self.failed_in_a_row = 0  # live failures only: a replayed one says nothing of now
        self.unproductive_in_a_row = 0  # answered prompts that added nothing to the pool
        self._recent: deque[int] = deque(maxlen=COLLAPSE_WINDOW)  # 1: answer added something
        self._productive = self._answered_prompts = 0
        self.failures_replayed = 0
        self.stop_reason: str | None = None

    @property
    def accepted(self) -> int:
        return len(self.machine)

    @property
    def answered(self) -> int:
        """Requests answered so far: prompts (decided or beyond the stop) and follow-ups."""
        return self.decided + self._unused + self._followups_answered

    @property
    def replayed(self) -> int:
        """Recorded decisions the loop still follows (0 once it went live or diverged)."""
        return self._replaying

    def collapse_warning(self) -> str | None:
        """A line for the progress display when the acceptance rate has collapsed: a
        generator that stops producing anything new burns its budget for nothing."""
        earlier = self._answered_prompts - len(self._recent)
        if len(self._recent) < COLLAPSE_WINDOW or earlier < COLLAPSE_WINDOW // 4:
            return None
        recent = sum(self._recent) / len(self._recent)
        before = (self._productive - sum(self._recent)) / earlier
        if recent >= COLLAPSE_SHARE * before:
            return None
        stop = (f"; stops after {self._stall_after} in a row add nothing"
                if self._stall_after else "")
        return (f"acceptance collapsed: {recent:.1%} of the last {len(self._recent)} answers "
                f"added an instruction, {before:.0%} before{stop}")

    def requests_left(self) -> int | None:
        """The requests this lane still has to answer, estimated for the progress line's ETA:
        the prompts the target still needs at the yield so far (at least those out), plus the
        follow-ups of every accepted or still-wanted instruction not answered yet. None until
        something was accepted."""
        out = self.sent - self.decided
        if self.stop_reason is not None:
            prompts, instructions = out - self._unused, self.accepted
        elif self.accepted:
            needed = -(-(self._target - self.accepted) * self.decided // self.accepted)
            prompts, instructions = max(out, needed), max(self._target, self.accepted)
        else:
            return None
        followups = len(self._followups) * instructions - self._followups_answered
        return prompts + max(followups, len(self._queued) + len(self._running))

    def run(self, executor: Executor) -> Iterator[Decision | FollowedUp | Unused]:
        index = NoveltyIndex(self._seeds, threshold=self._threshold, exact_scores=self._exact)
        pool_sizes = [0]  # pool_sizes[n]: machine pool size after n decided prompts
        prompts: dict[int, Future[GenerationOutcome]] = {}
        self.stop_reason = self._stopped()
        while True:
            self._send_followups(executor, prompts)
            if self.stop_reason is None:
                self._send_prompts(executor, prompts, pool_sizes)
            progressed = False
            for event in self._answered_followups():
                progressed = True
                self._followups_answered += 1
                yield event
            head = prompts.get(self.decided) if self.stop_reason is None else None
            if head is not None and head.done():
                outcome = prompts.pop(self.decided).result()
                decision = self._decide(self.decided, outcome, index)
                self._queue_followups(decision)
                self._count_in_flight(prompts)
                yield decision
                self.decided += 1
                pool_sizes.append(len(self.machine))
                self.stop_reason = self._stopped()
                continue
            if self.stop_reason is not None:  # beyond the stop: cached and counted only
                for i in [i for i, f in sorted(prompts.items()) if f.done()]:
                    progressed = True
                    self._unused += 1
                    yield Unused(prompts.pop(i).result())
                if not prompts and not self._running and not self._queued:
                    break
            if progressed:
                continue
            running = [f for f in (*prompts.values(), *self._running) if not f.done()]
            if not running:  # every exit above is reachable; this would be a bug, not a hang
                raise RuntimeError("bootstrap loop stalled with nothing in flight")
            wait(running, return_when=FIRST_COMPLETED)
        self.in_flight = 0

    def _send_prompts(self, executor: Executor, prompts: dict[int, Future[GenerationOutcome]],
                      pool_sizes: list[int]) -> None:
        while (self.sent < self._max_prompts and self.in_flight < self._concurrency
               and self._refresh.visible(self.sent) <= self.decided
               and (self.sent < self._replaying or self.decided >= self._replaying)
               and not self._likely_enough(prompts)):
            seen = pool_sizes[self._refresh.visible(self.sent)]
            request = self._request(self.sent, PoolPrefix(self.machine, seen))
            prompts[self.sent] = self._submit(executor, self.sent, request)
            self.sent += 1
            self.in_flight += 1

    def _submit(self, executor: Executor, index: int, request: GenerationRequest
                ) -> Future[GenerationOutcome]:
        """Ask for prompt `index`, or replay the failure its journal recorded."""
        if index < self._replaying:
            recorded = self._replay[index]
            assert self._key is not None
            if self._key(request) != recorded.key:  # the config changed: live from here on
                self._replaying = 0
            elif recorded.failure is not None and not self._retry_failed:
                self.failures_replayed += 1
                done: Future[GenerationOutcome] = Future()
                done.set_result(recorded.failure.replay(request))
                return done
        return executor.submit(self._call, request)

    def _send_followups(self, executor: Executor,
                        prompts: dict[int, Future[GenerationOutcome]]) -> None:
        self._count_in_flight(prompts)
        while self._queued and self.in_flight < self._concurrency:
            step, root, item = self._queued.popleft()
            future = executor.submit(self._followup_call, self._followups[step].request(item))
            self._running[future] = (step, root)
            self.in_flight += 1

    def _answered_followups(self) -> Iterator[FollowedUp]:
        for future in [f for f in self._running if f.done()]:
            step, root = self._running.pop(future)
            outcome = future.result()
            items = list(self._followups[step].results(outcome)) if outcome.ok else []
            if step + 1 < len(self._followups):
                self._queued.extend((step + 1, root, item) for item in items)
            yield FollowedUp(step, root, outcome, items)

    def _queue_followups(self, decision: Decision) -> None:
        if self._followups:
            self._queued.extend((0, record, record)
                                for record, verdict in decision.novelty if verdict.keep)

    def _count_in_flight(self, prompts: dict[int, Future[GenerationOutcome]]) -> None:
        self.in_flight = (sum(not f.done() for f in prompts.values())
                          + sum(not f.done() for f in self._running))

    def _likely_enough(self, prompts: dict[int, Future[GenerationOutcome]]) -> bool:
        """Do the undecided prompts already promise the rest of the target, at the yield
        seen so far (with a 25 % margin)? Then more would likely be wasted near the end.
        Before the first decision the yield is what the heuristics keep of the answers
        already back (a small target is otherwise overshot by a whole `max_concurrency` of
        prompts while the first answer is still out). This only decides what is sent, never
        what is decided: the output stays the same."""
        if self.decided:
            rate = self.accepted / self.decided
        else:
            answered = [i for i, f in prompts.items() if f.done()]
            if not answered:
                return False
            for i in answered:
                if i not in self._early_yield:
                    self._early_yield[i] = self._heuristic_yield(prompts[i].result())
            rate = sum(self._early_yield[i] for i in answered) / len(answered)
        return (self.sent - self.decided) * rate >= 1.25 * (self._target - self.accepted)

    def _heuristic_yield(self, outcome: GenerationOutcome) -> int:
        return sum(verdict.keep for _, verdict in self._judge(outcome)) if outcome.ok else 0

    def _stopped(self) -> str | None:
        if self.accepted >= self._target:
            return STOP_TARGET
        if self.failed_in_a_row >= FAILURES_IN_A_ROW:
            return STOP_FAILING
        if self.decided >= self._max_prompts:
            return STOP_BUDGET
        if self._stall_after is not None and self.unproductive_in_a_row >= self._stall_after:
            return STOP_STALLED
        return None

    def _decide(self, i: int, outcome: GenerationOutcome, index: NoveltyIndex) -> Decision:
        before = len(self.machine)
        decision = self._judge_novelty(i, outcome, index)
        added = len(self.machine) - before
        if outcome.ok:
            self._answered_prompts += 1
            self._productive += added > 0
            self._recent.append(int(added > 0))
            self.unproductive_in_a_row = 0 if added else self.unproductive_in_a_row + 1
        if self._record is not None:
            assert self._key is not None
            failure = None if outcome.ok else RecordedFailure.of(outcome)
            self._record(i, DecidedPrompt(self._key(outcome.request), added, failure))
        return decision

    def _judge_novelty(self, i: int, outcome: GenerationOutcome, index: NoveltyIndex
                       ) -> Decision:
        if not outcome.ok:
            self.failed_in_a_row += not outcome.cached
            return Decision(i, outcome, [], [])
        self.failed_in_a_row = 0
        heuristics = list(self._judge(outcome))
        novelty = []
        for record, verdict in heuristics:
            if not verdict.keep:
                continue
            found = index.check(record.instruction)
            scored = replace(record, rouge_l_max=found.score, most_similar=found.most_similar)
            if found.accepted:
                index.add(record.instruction)
                self.machine.append(record.instruction)
                novelty.append((scored, Verdict.ok(found.score)))
            else:
                novelty.append((scored, Verdict.drop(
                    Reason.NOT_NOVEL, f"ROUGE-L {found.score:.4f} > {self._threshold}",
                    found.score)))
        return Decision(i, outcome, heuristics, novelty)


#: The default prompt budget per wanted instruction (`max_prompts: null`). A prompt asks for up
#: to 7 new instructions; a loop that needs more than 4 prompts per accepted one is producing
#: mostly repeats or junk, and should stop and say so rather than run on.
PROMPTS_PER_INSTRUCTION = 4


def prompt_budget(max_prompts: int | None, target: int) -> int:
    """The configured prompt budget, or PROMPTS_PER_INSTRUCTION per wanted instruction."""
    return max_prompts if max_prompts is not None else PROMPTS_PER_INSTRUCTION * target


def lane_share(total: int, lanes: int, lane: int) -> int:
    """Lane `lane`'s part of `total` (targets and budgets): equal shares, the first lanes take
    the remainder."""
    return total // lanes + (lane < total % lanes)


class LoopSettings:
    """What a recipe's bootstrap section derives for the loop (Self-Instruct, Ensemble-Instruct
    types): its fields `refresh`, `refresh_window`, `prompts_per_round`, `max_prompts` and
    `num_instructions` become the loop's refresh rule and prompt budget; `stall_prompts` its
    stall rule."""

    refresh: str
    refresh_window: int
    prompts_per_round: int
    max_prompts: int | None
    num_instructions: int
    stall_prompts: int | None

    @property
    def loop_refresh(self) -> Refresh:
        return Refresh.of(self.refresh, self.refresh_window, self.prompts_per_round)

    @property
    def prompt_budget(self) -> int:
        return prompt_budget(self.max_prompts, self.num_instructions)
