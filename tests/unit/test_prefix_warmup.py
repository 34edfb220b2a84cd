"""The prefix warm-up gate: one request per template first, the rest after it has answered."""

from __future__ import annotations

import threading
import time

import pytest

from pipelines.generators.generation import (
    WARMUP_PREFIX_CHARS,
    GenerationRequest,
    PrefixWarmup,
    warmup_key,
)
from pipelines.generators.vllm_server import parse_prefix_cache
from pipelines.outputs.report import format_summary
from pipelines.settings import GeneratorConfig


def _follower(gate: PrefixWarmup, key: str, log: list, started: threading.Event) -> None:
    started.set()
    with gate.turn(key) as held:
        log.append((key, "follower", held))


def test_followers_wait_until_the_first_request_of_their_template_is_done() -> None:
    gate, log = PrefixWarmup(), []
    with gate.turn("t") as held:
        assert held is False  # the first goes at once
        started = [threading.Event() for _ in range(3)]
        threads = [threading.Thread(target=_follower, args=(gate, "t", log, s)) for s in started]
        for thread in threads:
            thread.start()
        for s in started:
            s.wait(5)
        time.sleep(0.2)  # they had every chance to run
        assert log == []  # all held while the first is in flight
        log.append(("t", "first", False))
    for thread in threads:
        thread.join(5)
    assert log[0] == ("t", "first", False)
    assert sorted(log[1:]) == [("t", "follower", True)] * 3


def test_other_templates_do_not_wait_and_a_warm_template_never_waits() -> None:
    gate = PrefixWarmup()
    with gate.turn("a"):
        with gate.turn("b") as held:  # would deadlock if templates shared a gate
            assert held is False
    with gate.turn("a") as held:
        assert held is False


def test_a_failed_first_request_still_releases_the_others() -> None:
    gate, log = PrefixWarmup(), []
    started = threading.Event()
    thread = None
    with pytest.raises(RuntimeError):
        with gate.turn("t"):
            thread = threading.Thread(target=_follower, args=(gate, "t", log, started))
            thread.start()
            started.wait(5)
            raise RuntimeError("server gone")
    assert thread is not None
    thread.join(5)
    assert log == [("t", "follower", True)]


def _request(prompt: str, *, stage: str = "instance_gen", round_: int = 1,
             ref: str = "t.v1") -> GenerationRequest:
    return GenerationRequest(request_id="r", stage=stage, round=round_, subject_id="s",
                             prompt=prompt, prompt_ref=ref, sampling={}, seed=1)


def test_only_requests_sharing_a_long_prefix_wait_for_each_other() -> None:
    demos = "x" * WARMUP_PREFIX_CHARS
    same = {warmup_key(_request(demos + tail)) for tail in ("Task: a", "Task: b")}
    assert len(same) == 1  # one template, long demos, different tasks: one gate
    # a short header, then sampled demos (Self-Instruct's instruction prompt): no waiting
    assert warmup_key(_request("Come up with tasks:\nTask 1: a" + demos)) != \
        warmup_key(_request("Come up with tasks:\nTask 1: b" + demos))
    key = warmup_key(_request(demos))
    assert key != warmup_key(_request(demos, round_=2))  # new round: new demos may follow
    assert key != warmup_key(_request(demos, stage="clf_identify"))
    assert key != warmup_key(_request(demos, ref="t.v2"))


def test_prefix_warmup_is_off_unless_asked_for() -> None:
    assert not GeneratorConfig(backend="embedded").warms_prefixes
    assert not GeneratorConfig(backend="vllm", model="m").warms_prefixes
    assert not GeneratorConfig(backend="openai", base_url="http://x/v1").warms_prefixes
    assert GeneratorConfig(backend="embedded", prefix_warmup=True).warms_prefixes
    assert GeneratorConfig(backend="openai", base_url="http://x/v1",
                           prefix_warmup=True).warms_prefixes
    assert not GeneratorConfig(backend="embedded", prefix_warmup=False).warms_prefixes


def test_prefix_cache_counters_are_summed_over_engines_from_the_metrics_page() -> None:
    page = "\n".join([
        "# HELP vllm:prefix_cache_queries Prefix cache queries, in terms of number of tokens.",
        "# TYPE vllm:prefix_cache_queries counter",
        'vllm:prefix_cache_queries_total{engine="0",model_name="m"} 1200.0',
        'vllm:prefix_cache_queries_total{engine="1",model_name="m"} 300.0',
        'vllm:prefix_cache_queries_created{engine="0",model_name="m"} 1.76e+09',
        'vllm:prefix_cache_hits_total{engine="0",model_name="m"} 960.0',
        'vllm:external_prefix_cache_hits_total{engine="0",model_name="m"} 5.0',
    ])
    assert parse_prefix_cache(page) == (1500, 960)
    assert parse_prefix_cache("") == (0, 0)


def test_the_summary_shows_each_stage_s_prefix_cache_hit_rate(tmp_path) -> None:
    usage = {"instance_gen": {"calls": 51, "completion_tokens": 900,
                              "prefix_cache_queries": 20000, "prefix_cache_hits": 15000},
             "instruction_gen": {"calls": 16, "completion_tokens": 700}}
    manifest = {"recipe": "self_instruct", "generator": None, "stages": {}, "accounting": [],
                "rows": {},
                "run": {"duration_s": 1.0, "generator_usage": usage}}
    lines = format_summary(manifest, tmp_path, {}).splitlines()
    [instance] = [line for line in lines if line.strip().startswith("instance_gen")]
    [instruction] = [line for line in lines if line.strip().startswith("instruction_gen")]
    assert instance.endswith("900 tokens; prefix cache 75% of 20000 prompt tokens")
    assert instruction.endswith("700 tokens")  # not measured (a remote endpoint): nothing
