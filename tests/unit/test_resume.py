"""Resume: a lane's journal replays what the loop decided (failures included), a rerun sends
nothing past the last decision, `retry_failed` asks failures again, replayed failures do not
stop a lane, a stalled generator stops it; the journal on disk; failure records in the cache."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from test_bootstrap_loop import SEEDS, WINDOW_8, _answer, _Calls, _judge, _request

from pipelines.generators.backends import GeneratorIdentity
from pipelines.generators.cache import ResponseCache
from pipelines.generators.generation import (
    Completion,
    GenerationFailed,
    GenerationOutcome,
    GenerationRequest,
    RecordedFailure,
)
from pipelines.generators.handler import GeneratorModelHandler, generate_one
from pipelines.settings import GeneratorConfig
from pipelines.transforms import bootstrap_loop
from pipelines.transforms.bootstrap_loop import (
    STOP_BUDGET,
    STOP_FAILING,
    STOP_STALLED,
    STOP_TARGET,
    BootstrapLoop,
    DecidedPrompt,
    Decision,
    Refresh,
)
from pipelines.transforms.lane_journal import LaneJournal, retry_cost


def _key(request: GenerationRequest) -> str:
    return hashlib.sha256(f"{request.prompt}\x1f{request.seed}".encode()).hexdigest()


class _Cached:
    """The response cache in front of a scripted generator: answers are kept by key (as
    `generate_one` keeps them, even beyond the stop); `live` lists the prompts really asked."""

    def __init__(self, store: dict[str, Completion], calls: _Calls) -> None:
        self._store = store
        self._calls = calls
        self._lock = threading.Lock()
        self.live: list[int] = []

    def __call__(self, request: GenerationRequest) -> GenerationOutcome:
        with self._lock:
            hit = self._store.get(_key(request))
        if hit is not None:
            return GenerationOutcome(request, hit, cached=True)
        with self._lock:
            self.live.append(request.context)
        outcome = self._calls(request)
        if outcome.ok:
            with self._lock:
                self._store.setdefault(_key(request), outcome.completion)
        return outcome


def _lane(cached: _Cached, journal: LaneJournal, *, target: int = 10_000,
          max_prompts: int = 40, concurrency: int = 6, retry_failed: bool = False,
          request: Callable[[int, Sequence[str]], GenerationRequest] = _request,
          stall_after: int | None = None, refresh: Refresh = WINDOW_8):
    loop = BootstrapLoop(seeds=SEEDS, request=request, call=cached, judge=_judge,
                         target=target, max_prompts=max_prompts, max_concurrency=concurrency,
                         refresh=refresh, threshold=0.7, key=_key, replay=journal.entries,
                         record=journal.record, retry_failed=retry_failed,
                         stall_after=stall_after)
    pool = ThreadPoolExecutor(max_workers=concurrency)
    try:
        events = list(loop.run(pool))
    finally:
        pool.shutdown(wait=True)
        journal.flush()
    return loop, [_summary(e) for e in events if isinstance(e, Decision)]


def _summary(d: Decision) -> tuple:
    return (d.index, d.outcome.ok, d.outcome.error_class,
            [(r.instruction, v.keep) for r, v in d.novelty])


def test_a_resume_replays_decided_failures_and_pays_for_no_decided_prompt(tmp_path):
    store: dict[str, Completion] = {}
    outage = _Cached(store, _Calls(fail=lambda i: i in (3, 4, 9), delay=0.003, seed=1))
    first, decided = _lane(outage, LaneJournal(str(tmp_path), "lane"), max_prompts=20)
    assert [d[0] for d in decided if not d[1]] == [3, 4, 9]

    healthy = _Cached(store, _Calls(delay=0.003, seed=2))
    second, again = _lane(healthy, LaneJournal(str(tmp_path), "lane"), max_prompts=40)
    assert again[:20] == decided  # failures included, in order
    assert second.failures_replayed == 3
    assert min(healthy.live) >= 20, "a decided prompt was asked again"
    assert second.stop_reason == STOP_BUDGET and len(again) == 40

    # once more: everything is decided, nothing is asked
    idle = _Cached(store, _Calls())
    third, once_more = _lane(idle, LaneJournal(str(tmp_path), "lane"), max_prompts=40)
    assert once_more == again and idle.live == []


def test_a_finished_run_replayed_sends_nothing_past_its_last_decision(tmp_path):
    store: dict[str, Completion] = {}
    first = _Cached(store, _Calls(delay=0.01, seed=6))
    loop, decided = _lane(first, LaneJournal(str(tmp_path), "lane"), target=12,
                          concurrency=16)
    assert loop.stop_reason == STOP_TARGET
    # Only the decided prompts' answers: whatever else the rerun sent would be paid for.
    journal = LaneJournal(str(tmp_path), "lane")
    decided_only = {e.key: store[e.key] for e in journal.entries}
    replay = _Cached(decided_only, _Calls())
    again, redecided = _lane(replay, journal, target=12, concurrency=16)
    assert redecided == decided
    assert replay.live == [], f"prompts past the last decision were sent: {replay.live}"
    assert again.sent == len(decided)


def test_retry_failed_asks_the_failures_again_and_ends_like_a_run_without_faults(tmp_path):
    store: dict[str, Completion] = {}
    outage = _Cached(store, _Calls(fail=lambda i: i in (2, 11), delay=0.002, seed=3))
    _lane(outage, LaneJournal(str(tmp_path / "a"), "lane"), max_prompts=30)
    journal = LaneJournal(str(tmp_path / "a"), "lane")
    cost = retry_cost(journal.entries, WINDOW_8, followups=0)
    assert cost.failed == 2 and cost.invalidated == 30 - (2 + 8 + 1) - 1  # 11 stays failed

    healthy = _Cached(store, _Calls(delay=0.002, seed=4))
    retried, decided = _lane(healthy, journal, max_prompts=30, retry_failed=True)
    reference, clean = _lane(_Cached({}, _Calls(seed=5)),
                             LaneJournal(str(tmp_path / "b"), "lane"), max_prompts=30)
    assert decided == clean
    assert {2, 11} <= set(healthy.live)
    assert not set(healthy.live) & set(range(2)), "prompts before the failure were re-asked"
    # the journal now holds the new decisions: another run replays them with no call
    idle = _Cached(store, _Calls())
    _, again = _lane(idle, LaneJournal(str(tmp_path / "a"), "lane"), max_prompts=30)
    assert again == decided and idle.live == []


def test_a_lane_stopped_by_failures_goes_on_past_them_when_the_generator_is_back(tmp_path):
    store: dict[str, Completion] = {}
    down = _Cached(store, _Calls(fail=lambda i: i >= 3))
    loop, decided = _lane(down, LaneJournal(str(tmp_path), "lane"), max_prompts=10_000)
    assert loop.stop_reason == STOP_FAILING
    assert len(decided) == 3 + bootstrap_loop.FAILURES_IN_A_ROW

    back = _Cached(store, _Calls())
    resumed, again = _lane(back, LaneJournal(str(tmp_path), "lane"), max_prompts=80)
    assert again[:len(decided)] == decided
    assert resumed.stop_reason == STOP_BUDGET and len(again) == 80
    assert sorted(back.live) == list(range(len(decided), 80))


def test_a_changed_request_ends_the_replay_and_is_asked(tmp_path):
    store: dict[str, Completion] = {}
    outage = _Cached(store, _Calls(fail=lambda i: i == 12))
    _lane(outage, LaneJournal(str(tmp_path), "lane"), max_prompts=20)

    def changed(index: int, machine: Sequence[str]) -> GenerationRequest:
        request = _request(index, machine)
        if index < 10:
            return request
        return GenerationRequest(**{**request.__dict__, "prompt": "v2 " + request.prompt})

    healthy = _Cached(store, _Calls())
    loop, decided = _lane(healthy, LaneJournal(str(tmp_path), "lane"), max_prompts=20,
                          request=changed)
    assert all(d[1] for d in decided), "a failure recorded for another request was replayed"
    assert sorted(healthy.live) == list(range(10, 20))


def test_a_generator_that_stops_adding_anything_stalls_the_lane_and_warns():
    def repeats(request: GenerationRequest) -> GenerationOutcome:
        text = _answer(request.prompt) if request.context < 30 else \
            "Describe the river in detail for a child please."
        return GenerationOutcome(request, Completion(text, "stop", 1, 1))

    loop = BootstrapLoop(seeds=SEEDS, request=_request, call=repeats, judge=_judge,
                         target=10_000, max_prompts=100_000, max_concurrency=4,
                         refresh=WINDOW_8, threshold=0.7, stall_after=250)
    warnings = []
    pool = ThreadPoolExecutor(max_workers=4)
    try:
        for _ in loop.run(pool):
            warnings.append(loop.collapse_warning())
    finally:
        pool.shutdown(wait=True)
    assert loop.stop_reason == STOP_STALLED
    assert loop.decided < 30 + 250 + 2
    late = [w for w in warnings if w]
    assert late and "acceptance collapsed" in late[-1]


def test_the_journal_on_disk(tmp_path):
    entries = [DecidedPrompt(f"k{i}", i % 3) if i % 7 else DecidedPrompt(
        f"k{i}", 0, RecordedFailure("http_500", f"boom {i}", 4)) for i in range(1000)]
    journal = LaneJournal(str(tmp_path), "lane", flush_s=0.0)
    for i, entry in enumerate(entries):
        journal.record(i, entry)
    segments = sorted((tmp_path / "lanes" / "lane").glob("*.jsonl"))
    assert len(segments) <= 11, f"{len(segments)} segments for 1000 flushes"
    assert LaneJournal(str(tmp_path), "lane").entries == entries

    # a decision that differs drops the recorded tail
    journal = LaneJournal(str(tmp_path), "lane", flush_s=3600)
    journal.record(500, DecidedPrompt("other"))
    journal.flush()
    assert LaneJournal(str(tmp_path), "lane").entries == [*entries[:500],
                                                           DecidedPrompt("other")]

    # a gap (a crash between rewriting and deleting) ends what is trusted
    lane = tmp_path / "lanes" / "gap"
    lane.mkdir(parents=True)
    (lane / "000000000.jsonl").write_text(
        "".join(json.dumps({"i": i, "key": f"k{i}", "accepted": 1}) + "\n" for i in range(5)))
    (lane / "000000007.jsonl").write_text(json.dumps({"i": 7, "key": "k7"}) + "\n")
    assert [e.key for e in LaneJournal(str(tmp_path), "gap").entries] == [
        f"k{i}" for i in range(5)]


def test_retry_cost_counts_what_saw_the_first_failure():
    ok, bad = DecidedPrompt("k", 2), DecidedPrompt("k", 0, RecordedFailure("x", "y", 1))
    entries = [ok] * 5 + [bad] + [ok] * 20
    cost = retry_cost(entries, Refresh("window", 4), followups=2)
    # prompts 10..25 see prompt 5's decision (window 4): 16 prompts, 2 accepted each
    assert (cost.failed, cost.invalidated, cost.calls) == (1, 16, 1 + 16 + 2 * 16 * 2)
    assert retry_cost([ok] * 5, Refresh("window", 4), 2).calls == 0
    batch = retry_cost(entries, Refresh("batch", 5), followups=0)
    assert batch.invalidated == 25 - 10 + 1 - 0  # from the next batch (10) on


# -- failure records in the cache (generate_one) -------------------------------------------

class _Failing:
    def __init__(self, fail: bool) -> None:
        self.fail = fail
        self.asked = 0

    def generate(self, request: GenerationRequest):
        self.asked += 1
        if self.fail:
            raise GenerationFailed("http_503", "HTTP 503: down", 4)
        return Completion("an answer", "stop", 3, 2), 1, 0


def _session(cache_dir: Path, client: _Failing, retry_failed: bool = False):
    cfg = GeneratorConfig(backend="openai", base_url="http://127.0.0.1:9", model="m",
                          revision="r1")
    handler = GeneratorModelHandler(cfg, GeneratorIdentity("m", "r1", "m"), str(cache_dir),
                                    retry_failed=retry_failed)
    session = handler.load_model()
    session._client = client  # noqa: SLF001 - the transport is what this test scripts
    return session


def _req() -> GenerationRequest:
    return GenerationRequest("r", "s", 1, "r", "p", "t@v1", {}, 7)


def test_a_decided_failure_is_recorded_replayed_and_retried_on_request(tmp_path):
    down = _Failing(fail=True)
    first = generate_one(_req(), _session(tmp_path, down))
    assert not first.ok and down.asked == 1

    up = _Failing(fail=False)
    replayed = generate_one(_req(), _session(tmp_path, up))
    assert up.asked == 0 and replayed.cached and not replayed.ok
    assert (replayed.error_class, replayed.error_message, replayed.attempts) == (
        first.error_class, first.error_message, first.attempts)

    retried = generate_one(_req(), _session(tmp_path, up, retry_failed=True))
    assert retried.ok and up.asked == 1
    assert not list(tmp_path.rglob("*.failed")), "the answered failure is still on record"
    assert generate_one(_req(), _session(tmp_path, up)).cached


def test_a_request_sent_ahead_or_beyond_a_decision_records_no_failure(tmp_path):
    down = _Failing(fail=True)
    generate_one(_req(), _session(tmp_path, down), decided=False)
    assert not list(tmp_path.rglob("*.failed"))
    up = _Failing(fail=False)
    assert generate_one(_req(), _session(tmp_path, up)).ok and up.asked == 1


def test_an_unreadable_failure_record_is_asked_again(tmp_path):
    cache = ResponseCache(str(tmp_path))
    generate_one(_req(), _session(tmp_path, _Failing(fail=True)))
    (record,) = tmp_path.rglob("*.failed")
    record.write_text("{not json")
    up = _Failing(fail=False)
    assert generate_one(_req(), _session(tmp_path, up)).ok and up.asked == 1
    assert cache.root == str(tmp_path)


@pytest.mark.parametrize("failure", [None, RecordedFailure("timeout", "no answer", 2)])
def test_journal_entries_round_trip(tmp_path, failure):
    journal = LaneJournal(str(tmp_path), "x", flush_s=0)
    journal.record(0, DecidedPrompt("abc", 3 if failure is None else 0, failure))
    assert LaneJournal(str(tmp_path), "x").entries == journal.entries
