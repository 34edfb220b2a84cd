"""The streaming bootstrap loop with a scripted call: decisions in prompt order whatever the
completion order or concurrency, the refresh window, batch mode, failures, stops."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor

import pytest

from filters.verdict import Verdict
from pipelines.generators.generation import Completion, GenerationOutcome, GenerationRequest
from pipelines.transforms import bootstrap_loop
from pipelines.transforms.bootstrap_loop import (
    STOP_BUDGET,
    STOP_FAILING,
    STOP_TARGET,
    BootstrapLoop,
    Decision,
    FollowedUp,
    FollowUpStep,
    PoolPrefix,
    Refresh,
    Unused,
    lane_share,
    prompt_budget,
)
from schemas import InstructionRecord, Reason

SEEDS = ["Summarize the plot of a novel you like.", "Translate a greeting into French."]
WORDS = ["river", "planet", "violin", "market", "garden", "engine", "castle", "forest",
         "harbor", "desert", "bridge", "glacier", "temple", "canyon", "meadow", "island"]


def _request(index: int, machine: Sequence[str]) -> GenerationRequest:
    """The prompt names its index and the pool it saw (size and last text), so any change in
    what a prompt saw changes its answer."""
    last = machine[-1] if len(machine) else ""
    return GenerationRequest(
        request_id=f"r{index}", stage="instruction_gen", round=1, subject_id=f"r{index}",
        prompt=f"{index}|{len(machine)}|{last}", prompt_ref="t@v1", sampling={}, seed=index,
        context=index)


def _answer(prompt: str) -> str:
    """2-4 instructions from a seeded RNG of the prompt: novel ones, repeats of earlier
    answers (not novel) and too-short ones (dropped by the heuristics)."""
    rng = random.Random(prompt)
    items = []
    for _ in range(rng.randint(2, 4)):
        roll = rng.random()
        if roll < 0.15:
            items.append("Too short.")
        elif roll < 0.35:
            items.append(f"Describe the {rng.choice(WORDS[:3])} in detail for a child please.")
        else:
            a, b, c = (f"{w}{rng.randint(0, 999)}" for w in rng.sample(WORDS, 3))
            items.append(f"Write facts linking a {a} to a {b} and {c}.")
    return "\n".join(items)


class _Calls:
    """The scripted generator: answers from the prompt, optional failures, random delays;
    records every prompt and the most requests ever in flight together."""

    def __init__(self, fail: Callable[[int], bool] = lambda i: False, delay: float = 0.0,
                 seed: int = 0, slow: dict | None = None) -> None:
        self._fail = fail
        self._delay = delay
        self._slow = slow or {}
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._running = 0
        self.max_running = 0
        self.prompts: dict[int, str] = {}

    def __call__(self, request: GenerationRequest) -> GenerationOutcome:
        with self._lock:
            self._running += 1
            self.max_running = max(self.max_running, self._running)
            self.prompts[request.context] = request.prompt
            pause = self._slow.get(request.context, self._rng.random() * self._delay)
        time.sleep(pause)
        with self._lock:
            self._running -= 1
        if self._fail(request.context):
            return GenerationOutcome(request, None, attempts=3, error_class="http_500",
                                     error_message="injected")
        return GenerationOutcome(request, Completion(_answer(request.prompt), "stop", 1, 1))


def _judge(outcome: GenerationOutcome):
    assert outcome.completion is not None
    for position, text in enumerate(outcome.completion.text.split("\n")):
        record = InstructionRecord(id=f"{outcome.request.context}-{position}", content_hash="",
                                   recipe="t", stage="instruction_gen", round=1,
                                   instruction=text, slot=outcome.request.context,
                                   position=position)
        yield record, (Verdict.ok() if len(text.split()) >= 4
                       else Verdict.drop(Reason.TOO_SHORT))


class _ShuffledExecutor(Executor):
    """Runs submitted calls one at a time in a seeded random order of what is waiting."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)
        self._queue: list[tuple[Future, Callable, tuple]] = []
        self._cv = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._work, daemon=True)
        self._thread.start()

    def submit(self, fn, /, *args, **kwargs):  # type: ignore[override]
        future: Future = Future()
        with self._cv:
            self._queue.append((future, fn, args))
            self._cv.notify()
        return future

    def _work(self) -> None:
        while True:
            with self._cv:
                while not self._queue and not self._closed:
                    self._cv.wait()
                if self._closed and not self._queue:
                    return
                time.sleep(0)  # let the loop submit more before one is picked
                future, fn, args = self._queue.pop(self._rng.randrange(len(self._queue)))
            future.set_result(fn(*args))

    def shutdown(self, wait: bool = True, **kwargs) -> None:  # type: ignore[override]
        with self._cv:
            self._closed = True
            self._cv.notify()
        if wait:
            self._thread.join()


WINDOW_8 = Refresh("window", 8)


def _run(calls: _Calls, *, concurrency: int, executor: Executor | None = None,
         target: int = 40, max_prompts: int = 60, refresh: Refresh = WINDOW_8,
         followups: Sequence[FollowUpStep] = ()):
    loop = BootstrapLoop(seeds=SEEDS, request=_request, call=calls, judge=_judge,
                         target=target, max_prompts=max_prompts, max_concurrency=concurrency,
                         refresh=refresh, threshold=0.7, followups=followups)
    pool = executor or ThreadPoolExecutor(max_workers=concurrency)
    try:
        events = list(loop.run(pool))
    finally:
        pool.shutdown(wait=True)
    decisions = [e for e in events if isinstance(e, Decision)]
    summary = [(d.index, d.outcome.ok,
                [(r.instruction, v.keep, v.reason) for r, v in d.heuristics],
                [(r.instruction, v.keep, r.rouge_l_max) for r, v in d.novelty])
               for d in decisions]
    return loop, events, summary


def test_output_does_not_depend_on_concurrency_or_completion_order():
    sequential = _run(_Calls(), concurrency=1, target=25)
    wide = _run(_Calls(delay=0.01, seed=3), concurrency=32, target=25)
    shuffled = _run(_Calls(), concurrency=16, executor=_ShuffledExecutor(seed=5), target=25)
    assert sequential[2] == wide[2] == shuffled[2]
    assert sequential[0].machine == wide[0].machine == shuffled[0].machine
    assert [d[0] for d in sequential[2]] == list(range(len(sequential[2])))
    assert sequential[0].stop_reason == STOP_TARGET
    # the scripted answers hold repeats and short ones: both rules were exercised
    assert any(not keep for d in sequential[2] for _, keep, _ in d[3])
    assert any(not keep for d in sequential[2] for _, keep, _ in d[2])


def test_prompts_see_the_pool_after_every_prompt_older_than_the_window():
    for refresh in (Refresh("window", 0), Refresh("window", 3), Refresh("batch", 5)):
        calls = _Calls(delay=0.005, seed=1)
        loop, events, summary = _run(calls, concurrency=8, refresh=refresh, target=10_000,
                                     max_prompts=30)
        after = [0]  # pool size after n decided prompts, rebuilt from the decisions
        for d in summary:
            after.append(after[-1] + sum(keep for _, keep, _ in d[3]))
        for index, prompt in calls.prompts.items():
            seen = int(prompt.split("|")[1])
            assert seen == after[refresh.visible(index)], (refresh, index)
        assert calls.max_running <= (1 if refresh == Refresh("window", 0) else
                                     4 if refresh.mode == "window" else 5)
        assert loop.stop_reason == STOP_BUDGET and len(summary) == 30


def test_refresh_visible():
    assert [Refresh("window", 2).visible(i) for i in range(5)] == [0, 0, 0, 1, 2]
    assert [Refresh("window", 0).visible(i) for i in range(3)] == [0, 1, 2]
    assert [Refresh("batch", 3).visible(i) for i in range(7)] == [0, 0, 0, 3, 3, 3, 6]
    assert Refresh.of("batch", 32, 5) == Refresh("batch", 5)
    assert Refresh.of("window", 32, 5) == Refresh("window", 32)
    with pytest.raises(ValueError):
        Refresh("batch", 0)


def test_a_window_wide_enough_keeps_every_slot_busy():
    calls = _Calls(delay=0.02, seed=2)
    _run(calls, concurrency=6, refresh=Refresh("window", 32), target=10_000, max_prompts=40)
    assert calls.max_running == 6


def test_a_failed_prompt_is_decided_as_failed_in_order_and_the_loop_goes_on():
    calls = _Calls(fail=lambda i: i in (2, 5), delay=0.005, seed=4)
    loop, events, summary = _run(calls, concurrency=8, target=10_000, max_prompts=12)
    assert [d[0] for d in summary] == list(range(12))
    assert [d[0] for d in summary if not d[1]] == [2, 5]
    assert all(d[2] == [] and d[3] == [] for d in summary if not d[1])
    assert loop.stop_reason == STOP_BUDGET


def test_a_generator_that_keeps_failing_stops_the_lane():
    loop, events, summary = _run(_Calls(fail=lambda i: i >= 3), concurrency=4,
                                 target=10_000, max_prompts=10_000)
    assert loop.stop_reason == STOP_FAILING
    assert len(summary) == 3 + bootstrap_loop.FAILURES_IN_A_ROW


def test_the_target_stops_the_loop_and_answers_beyond_it_are_unused():
    loop, events, summary = _run(_Calls(delay=0.01, seed=6), concurrency=16, target=12)
    accepted = [sum(keep for _, keep, _ in d[3]) for d in summary]
    assert sum(accepted) >= 12 > sum(accepted[:-1])
    assert loop.accepted == sum(accepted) and loop.stop_reason == STOP_TARGET
    unused = [e for e in events if isinstance(e, Unused)]
    assert all(e.outcome.request.context >= len(summary) for e in unused)
    assert loop.in_flight == 0
    assert len(summary) + len(unused) == loop.sent


def test_pool_prefix_is_a_sequence_view():
    texts = ["a", "b", "c"]
    view = PoolPrefix(texts, 2)
    texts.append("d")
    assert list(view) == ["a", "b"] and view[-1] == "b" and view[0:5] == ["a", "b"]
    with pytest.raises(IndexError):
        view[2]
    # random.sample draws the same from a view as from the copy the old code made
    assert random.Random(1).sample(view, 2) == random.Random(1).sample(["a", "b"], 2)


def test_shares_and_budget():
    assert [lane_share(10, 3, k) for k in range(3)] == [4, 3, 3]
    assert sum(lane_share(50_000, 7, k) for k in range(7)) == 50_000
    assert prompt_budget(None, 100) == 400 and prompt_budget(7, 100) == 7


def _followup(stage: str, fan_out: int) -> FollowUpStep:
    """A scripted follow-up: the request names the item; a good answer gives `fan_out` items."""
    def request(item: str | InstructionRecord) -> GenerationRequest:
        name = item.id if isinstance(item, InstructionRecord) else item
        return GenerationRequest(request_id=f"{stage}:{name}", stage=stage, round=1,
                                 subject_id=name, prompt=f"{stage}|{name}", prompt_ref="t@v1",
                                 sampling={}, seed=0, context=(stage, name))
    return FollowUpStep(stage, request, lambda outcome: [
        f"{outcome.request.subject_id}/{stage}{k}" for k in range(fan_out)])


CHAIN = (_followup("clf", 1), _followup("inst", 2))


def test_followups_run_once_per_accepted_instruction_and_change_no_decision():
    plain = _run(_Calls(), concurrency=1, target=25)
    calls = _Calls(delay=0.01, seed=7, fail=lambda c: c == ("clf", "3-0"))
    loop, events, summary = _run(calls, concurrency=8, target=25, followups=CHAIN)
    assert summary == plain[2] and loop.machine == plain[0].machine
    accepted = [r.id for d in events if isinstance(d, Decision)
                for r, v in d.novelty if v.keep]
    done = [e for e in events if isinstance(e, FollowedUp)]
    first = {e.root.id: e for e in done if e.step == 0}
    second = {e.root.id: e for e in done if e.step == 1}
    assert sorted(first) == sorted(accepted)  # each accepted instruction, once
    assert not first["3-0"].outcome.ok and first["3-0"].items == []  # a failure: no next step
    assert sorted(second) == sorted(set(accepted) - {"3-0"})
    assert all(e.items == [f"{e.root.id}/clf0/inst0", f"{e.root.id}/clf0/inst1"]
               for e in second.values())
    # a follow-up starts as soon as its instruction is accepted, not after the loop's end
    last_decision = max(i for i, e in enumerate(events) if isinstance(e, Decision))
    assert min(i for i, e in enumerate(events) if isinstance(e, FollowedUp)) < last_decision
    assert loop.in_flight == 0


def test_followups_share_the_loops_slots():
    calls = _Calls(delay=0.02, seed=8)
    loop, events, _ = _run(calls, concurrency=6, refresh=Refresh("window", 32), target=30,
                           max_prompts=40, followups=CHAIN)
    assert calls.max_running == 6
    n_followups = sum(isinstance(e, FollowedUp) for e in events)
    assert len(calls.prompts) == loop.sent + n_followups


def test_a_small_target_is_not_overshot_while_the_first_answer_is_out():
    """Prompt 0 is slow and every other answer instant: before any decision, the yield of
    the answers already back says how many prompts the target needs."""
    plain = _run(_Calls(), concurrency=1, target=5, max_prompts=60)
    loop, events, summary = _run(_Calls(slow={0: 0.3}), concurrency=32, target=5,
                                 max_prompts=60, refresh=Refresh("window", 128))
    assert summary == plain[2]  # what is decided does not change
    assert loop.sent <= 6, loop.sent  # not 32 (one per slot) or 60 (the budget)


def test_requests_left_counts_the_follow_ups_still_to_come():
    calls = _Calls(delay=0.01, seed=9)
    loop = BootstrapLoop(seeds=SEEDS, request=_request, call=calls, judge=_judge, target=20,
                         max_prompts=60, max_concurrency=8, refresh=WINDOW_8, threshold=0.7,
                         followups=CHAIN)
    assert loop.requests_left() is None  # nothing accepted yet: no estimate
    pool = ThreadPoolExecutor(max_workers=8)
    seen = []
    for event in loop.run(pool):
        if isinstance(event, Decision) and loop.accepted and loop.stop_reason is None:
            seen.append((loop.answered, loop.requests_left()))
    pool.shutdown()
    assert loop.requests_left() == 0 and loop.answered == len(calls.prompts)
    assert loop.sent > loop.decided  # answers came back after the stop, and were counted
    # early on, the estimate covers the two follow-ups of each of the 20 wanted instructions
    assert seen[0][1] >= 2 * 20 - seen[0][0]
