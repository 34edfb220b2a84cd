"""Request timeouts that follow the server's measured speed instead of discarding slow work."""

from __future__ import annotations

import threading
import time

import pytest
from fakes import FaultPlan

from pipelines.generators.generation import (
    GenerationFailed,
    GenerationRequest,
    OpenAICompatClient,
    RetryPolicy,
    TimeoutPolicy,
)


def test_floor_until_something_is_measured_then_tokens_times_speed_times_margin():
    policy = TimeoutPolicy(10.0, margin=2.0)
    assert policy.limit_s(1024) == 10.0
    policy.observe(100, 1.0)  # a fast server: the floor stays
    assert policy.limit_s(64) == 10.0
    for _ in range(2):
        policy.observe(100, 50.0)  # 0.5 s per token: a slow machine
    assert policy.limit_s(1024) == pytest.approx(2.0 * 1024 * 0.5)


def test_short_answers_do_not_count_and_the_median_ignores_one_outlier():
    policy = TimeoutPolicy(1.0, margin=1.0, min_tokens=16)
    policy.observe(3, 0.5)  # 3 tokens: mostly prompt time, not decoding speed
    assert policy.seconds_per_token() is None
    for _ in range(4):
        policy.observe(100, 10.0)
    policy.observe(100, 900.0)
    assert policy.seconds_per_token() == pytest.approx(0.1)


def test_at_least_margin_times_the_typical_answer_time():
    """A 3-token answer to a long prompt takes prompt time the per-token figure misses."""
    policy = TimeoutPolicy(1.0, margin=3.0)
    for _ in range(3):
        policy.observe(1, 4.0)
    assert policy.seconds_per_token() is None
    assert policy.limit_s(3) == pytest.approx(12.0)


def test_each_timeout_of_a_request_doubles_its_limit_up_to_the_cap():
    policy = TimeoutPolicy(5.0, cap_s=30.0)
    assert [policy.limit_s(64, n) for n in range(4)] == [5.0, 10.0, 20.0, 30.0]


def test_fixed_timeout_when_not_adaptive():
    policy = TimeoutPolicy(5.0, adaptive=False)
    policy.observe(100, 500.0)
    assert policy.limit_s(1024, 3) == 5.0


def _request(max_tokens: int = 64) -> GenerationRequest:
    return GenerationRequest("r1", "instruction_gen", 1, "s1", "List three fruits.\n1.", "p",
                             {"max_tokens": max_tokens}, seed=1)


def test_a_request_in_flight_waits_longer_once_the_server_proves_slow(scripted_server):
    """The measurement arrives while the answer is awaited: the request is not abandoned."""
    slow = scripted_server(faults=FaultPlan(p_delay=1.0, delay_s=1.5, max_faults=1))
    policy = TimeoutPolicy(1.0)
    client = OpenAICompatClient(slow.base_url, "scripted", timeout_s=1.0, timeouts=policy,
                                retry=RetryPolicy(max_attempts=1))
    # Another request of the same client finishes meanwhile: 20 tokens in 1 s.
    threading.Timer(0.3, policy.observe, (20, 1.0)).start()
    t0 = time.monotonic()
    completion, attempts, timeouts = client.generate(_request())
    assert completion.text and (attempts, timeouts) == (1, 0)
    assert time.monotonic() - t0 >= 1.4


def test_a_fixed_timeout_gives_up_and_counts_the_timeout(scripted_server):
    slow = scripted_server(faults=FaultPlan(p_delay=1.0, delay_s=1.5, max_faults=2))
    client = OpenAICompatClient(slow.base_url, "scripted", timeout_s=1.0,
                                retry=RetryPolicy(max_attempts=2, backoff_s=0.01))
    with pytest.raises(GenerationFailed) as info:
        client.generate(_request())
    assert (info.value.kind, info.value.attempts, info.value.timeouts) == ("timeout", 2, 2)
    assert "no answer within 1 s" in str(info.value)


def test_a_retry_after_a_timeout_gets_twice_the_time(scripted_server):
    """Before anything is measured (a cold, slow server) the second attempt succeeds."""
    slow = scripted_server(faults=FaultPlan(p_delay=1.0, delay_s=1.5, max_faults=2))
    client = OpenAICompatClient(slow.base_url, "scripted", timeout_s=1.0,
                                timeouts=TimeoutPolicy(1.0),
                                retry=RetryPolicy(max_attempts=2, backoff_s=0.01))
    completion, attempts, timeouts = client.generate(_request())
    assert completion.text and (attempts, timeouts) == (2, 1)
