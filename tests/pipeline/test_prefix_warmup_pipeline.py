"""Prefix warm-up in a Beam pipeline: requests of one template wait for its first answer."""

from __future__ import annotations

import apache_beam as beam
from apache_beam.ml.inference.base import RunInference
from apache_beam.testing.util import assert_that, equal_to
from fakes import ScriptedServer

from pipelines.generators.backends import GeneratorIdentity
from pipelines.generators.generation import GenerationRequest
from pipelines.generators.handler import GeneratorModelHandler
from pipelines.settings import GeneratorConfig

DEMOS = "".join(f"Task: demo task {i}\nOutput: demo answer {i}\n\n" for i in range(40))
TEMPLATES = {"clf": f"Can the task be classified?\n\n{DEMOS}Task: ",  # > 1024 shared chars
             "inst": f"Come up with examples.\n\n{DEMOS}Task: "}


def _requests() -> list[GenerationRequest]:
    return [GenerationRequest(request_id=f"{ref}-{i}", stage="stage", round=1,
                              subject_id=str(i), prompt=f"{head}Explain topic {i}.",
                              prompt_ref=ref, sampling={"max_tokens": 8}, seed=i)
            for ref, head in TEMPLATES.items() for i in range(6)]


def _run(warmup: bool) -> ScriptedServer:
    server = ScriptedServer(answer_delay_s=0.3)
    server.start()
    try:
        cfg = GeneratorConfig(backend="openai", base_url=server.base_url, revision="r1",
                              max_concurrency=16, prefix_warmup=warmup)
        handler = GeneratorModelHandler(cfg, GeneratorIdentity("scripted", "r1", "scripted"),
                                        None, endpoint=server.base_url)
        with beam.Pipeline() as p:
            answered = (p | beam.Create(_requests()) | RunInference(handler)
                        | beam.Map(lambda r: (r.example.request_id, r.inference.ok)))
            assert_that(answered, equal_to([(r.request_id, True) for r in _requests()]))
    finally:
        server.stop()
    return server


def _overlapping_first(server: ScriptedServer) -> dict[str, int]:
    """Per template: requests that arrived before the template's first answer was sent."""
    out = {}
    for ref, head in TEMPLATES.items():
        events = [(kind, t) for kind, t, prompt in server.timeline if prompt.startswith(head)]
        first_answer = min(t for kind, t in events if kind == "answer")
        out[ref] = sum(kind == "arrive" and t < first_answer for kind, t in events)
    return out


def test_requests_of_one_template_wait_for_its_first_answer() -> None:
    server = _run(True)
    assert _overlapping_first(server) == {"clf": 1, "inst": 1}  # only the first in flight
    assert server.stats.answered == len(_requests())  # every request answered once


def test_without_warmup_a_template_s_requests_go_together() -> None:
    assert all(n > 1 for n in _overlapping_first(_run(False)).values())
