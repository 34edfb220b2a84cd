"""Thin Beam shell: the only place with counters and tagged outputs.

Stages report to counters in namespace `instructbeam/stage/<stage>` with names `in`, `ok`,
`failed` (input units) and `produced`, `kept`, `rejected/<reason>` (output units); the
manifest reads them back and checks in = ok + failed and produced = kept + rejected. Targets
(e.g. `self_instruct.num_instructions`) count in `instructbeam/target/<name>`
(pipelines/outputs/targets.py says what).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import apache_beam as beam
from apache_beam.ml.inference.base import RunInference

from filters.verdict import Verdict
from pipelines.generators.backends import GeneratorIdentity
from pipelines.generators.generation import GenerationOutcome, GenerationRequest
from pipelines.generators.handler import GeneratorModelHandler, metric
from pipelines.outputs.progress import PROGRESS
from schemas import FailureRecord, InstructionRecord, RejectedRecord, stable_id

REJECTED = "rejected"
FAILED = "failed"


def count(stage: str, name: str, value: int = 1) -> None:
    """A stage's accounting counter (what the manifest checks)."""
    metric("stage", stage, name, value)


def count_target(target: str, name: str, value: int = 1) -> None:
    metric("target", target, name, value)


Judged = tuple[InstructionRecord, Verdict]


class _RouteVerdictsFn(beam.DoFn):
    def __init__(self, stage: str, filter_name: str) -> None:
        self._stage = stage
        self._filter = filter_name

    def process(self, judged: Judged) -> Iterable[Any]:
        record, verdict = judged
        return self._route(record, verdict, record)

    def _route(self, record: InstructionRecord, verdict: Verdict, kept: Any) -> Iterable[Any]:
        count(self._stage, "produced")
        PROGRESS.add(self._stage, kept=int(verdict.keep), rejected=int(not verdict.keep))
        if verdict.keep:
            count(self._stage, "kept")
            yield kept
            return
        assert verdict.reason is not None
        count(self._stage, f"rejected/{verdict.reason.value}")
        yield beam.pvalue.TaggedOutput(REJECTED, RejectedRecord(
            record, self._stage, self._filter, verdict.reason.value, verdict.score,
            verdict.detail,
        ))


class _RoutePayloadFn(_RouteVerdictsFn):
    """(record, verdict, payload): the verdict judges the record, a kept item goes on as its
    payload (Explore's candidates and nodes are not records yet)."""

    def process(self, judged: tuple[InstructionRecord, Verdict, Any]) -> Iterable[Any]:
        record, verdict, payload = judged
        return self._route(record, verdict, payload)


class Routed(NamedTuple):
    kept: beam.PCollection
    rejected: beam.PCollection


class RouteVerdicts(beam.PTransform):
    """Split (record, verdict) pairs into kept records and RejectedRecords, counting each.

    With `payload=True` the elements are (record, verdict, payload) and kept ones continue as
    their payload.
    """

    def __init__(self, stage: str, filter_name: str, *, payload: bool = False) -> None:
        super().__init__()
        self._stage = stage
        self._filter = filter_name
        self._fn = _RoutePayloadFn if payload else _RouteVerdictsFn

    def expand(self, judged: beam.PCollection) -> Routed:
        out = judged | beam.ParDo(self._fn(self._stage, self._filter)).with_outputs(
            REJECTED, main="kept")
        return Routed(out.kept, out[REJECTED])


ONE_KEY = None  # the key under which gather_all puts every element


def gather_all(items: beam.PCollection, prefix: str = "", *, entry: Callable[[Any], Any] | None
               = None, one: str = "One", gather: str = "Gather") -> beam.PCollection:
    """Every element (or `entry(element)`) in one place: one `(ONE_KEY, iterable)` element.

    For the steps that must see a whole collection at once, in an order they sort themselves
    (placing tree nodes, the greedy scans, sampling, writing one file). Two steps, labelled
    `<prefix>/<one>` and `<prefix>/<gather>`: plain labels, not a composite, so the callers'
    Dataflow step names stay what they were.
    """
    to_entry = entry or (lambda item: item)
    label = f"{prefix}/" if prefix else ""
    return (items
            | f"{label}{one}" >> beam.Map(lambda item: (ONE_KEY, to_entry(item)))
            | f"{label}{gather}" >> beam.GroupByKey())


class Generated(NamedTuple):
    ok: beam.PCollection  # GenerationOutcome with a completion
    failed: beam.PCollection  # FailureRecord


# What a failed request had produced before it failed (e.g. a dialogue's turns so far), as
# text for the failure record; None: nothing worth keeping.
Partial = Callable[[GenerationRequest], str | None]


class _SplitOutcomesFn(beam.DoFn):
    def __init__(self, stage: str, recipe: str, generator: str,
                 partial: Partial | None = None) -> None:
        self._stage = stage
        self._recipe = recipe
        self._generator = generator
        self._partial = partial

    def process(self, outcome: GenerationOutcome) -> Iterable[Any]:
        partial = (self._partial(outcome.request)
                   if self._partial is not None and not outcome.ok else None)
        dead = count_answer(outcome, recipe=self._recipe, stage=self._stage,
                            generator=self._generator, partial=partial)
        yield outcome if dead is None else beam.pvalue.TaggedOutput(FAILED, dead)


def count_answer(outcome: GenerationOutcome, *, recipe: str, stage: str, generator: str,
                 partial: str | None = None) -> FailureRecord | None:
    """Count one answered request of `stage` as ok or failed; a failed one's dead letter.
    Every generation step (a `Generate`, a bootstrap lane) counts its answers here."""
    if outcome.ok:
        count(stage, "ok")
        return None
    count(stage, "failed")
    return failure_record(outcome, recipe=recipe, stage=stage, generator=generator,
                          partial=partial)


def failure_record(outcome: GenerationOutcome, *, recipe: str, stage: str,
                   generator: str, partial: str | None = None) -> FailureRecord:
    """The dead letter of a failed request (every generation step writes the same)."""
    req = outcome.request
    return FailureRecord(
        id=stable_id(recipe, "failure", req.request_id),
        recipe=recipe,
        stage=stage,
        round=req.round,
        subject_id=req.subject_id,
        error_class=outcome.error_class or "unknown",
        message=outcome.error_message or "",
        attempts=outcome.attempts,
        generator=generator,
        prompt_ref=req.prompt_ref,
        prompt_sha256=req.prompt_sha256,
        partial=partial,
    )


def _count_in(stage: str) -> Callable[[GenerationRequest], GenerationRequest]:
    def fn(request: GenerationRequest) -> GenerationRequest:
        count(stage, "in")
        return request
    return fn


class Generate(beam.PTransform):
    """Requests -> completed outcomes + failure records, one generator call per element.

    Every step using the same generator passes the same `model_identifier`, so they share
    one loaded model (one server) per worker instead of starting one each. `partial` puts
    what a failed request's unit had produced so far on its failure record.
    """

    def __init__(self, handler: GeneratorModelHandler, *, stage: str, recipe: str,
                 generator: str, model_identifier: str, partial: Partial | None = None
                 ) -> None:
        super().__init__()
        self._handler = handler
        self._stage = stage
        self._recipe = recipe
        self._generator = generator
        self._model_identifier = model_identifier
        self._partial = partial

    def expand(self, requests: beam.PCollection) -> Generated:
        outcomes = (
            requests
            | "CountIn" >> beam.Map(_count_in(self._stage))
            | "Spread" >> beam.Reshuffle()
            | "Call" >> RunInference(self._handler, model_identifier=self._model_identifier)
            | "Outcome" >> beam.Map(lambda result: result.inference)
            | "Split" >> beam.ParDo(
                _SplitOutcomesFn(self._stage, self._recipe, self._generator, self._partial)
            ).with_outputs(FAILED, main="ok")
        )
        return Generated(outcomes.ok, outcomes[FAILED])


def stage_generator(handler: GeneratorModelHandler, identity: GeneratorIdentity, recipe: str,
                    model_identifier: str | None = None) -> Callable[[str], Generate]:
    """`generate(stage)` for one generator: every step it makes shares one model_identifier
    (default `instructbeam-<served name>`), so they share one loaded model per worker."""
    shared = model_identifier or f"instructbeam-{identity.served_name}"

    def generate(stage: str) -> Generate:
        return Generate(handler, stage=stage, recipe=recipe, generator=identity.model,
                        model_identifier=shared)
    return generate
