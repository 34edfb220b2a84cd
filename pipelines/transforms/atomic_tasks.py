"""Atomic tasks (EcomGPT) on Beam: reusable PTransforms over InstructionRecords.

Each derives new rows from existing ones, with lineage (`derived_from`, `transform`), and
accounts for every source row it was given: it leaves as the source of derived rows, as a
rejection with a reason code, or (simplification only) as a dead letter. Per transform,
source rows in = kept + rejected (+ failed) of its stage counters:

* `ReverseTasks`: one stage, `atomic_reversal` (rule only, no generator).
* `SimplifyTasks`: `atomic_simplification` decides each source row (kept: split into
  sub-tasks); its generator calls count under `<stage>_generate` (in / ok / failed), the
  strict reading of each answer under `<stage>_parse` (in / ok / failed: unparsable answers
  are dead letters with the raw text), and the proposed sub-tasks under `<stage>_subtasks`
  (produced / kept / rejected).
* `RecombineTasks`: one stage, `atomic_recombination`; rows are hashed into seeded groups
  of about `group_size`, each row's multiple-choice task draws its distractors from its
  group (no worker holds the whole dataset).

Pure rules: filters/atomic_tasks.py. Usable from any Beam pipeline of InstructionRecords
(e.g. after `ToInstructionRecords`); the `atomic_tasks` recipe wires them to a dataset.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

import apache_beam as beam

from filters.atomic_tasks import (
    MIN_REQUEST_OVERLAP,
    RECIPE,
    RecombinationRule,
    ReversalRule,
    SimplifyRule,
    group_of,
    judge_reversal,
    judge_simplification_candidate,
    judge_subtasks,
    parse_subtasks,
    recombine_group,
    reverse,
    simplified,
    subtask_schema,
)
from filters.verdict import Verdict
from pipelines.generators.backends import GeneratorIdentity
from pipelines.generators.generation import GenerationOutcome, GenerationRequest
from pipelines.generators.handler import GeneratorModelHandler
from pipelines.settings import SamplingConfig
from pipelines.transforms.provenance import Provenance, derive_seed
from pipelines.transforms.route import FAILED, REJECTED, RouteVerdicts, count, stage_generator
from prompts import load_prompt
from schemas import FailureRecord, InstructionRecord, Reason, RejectedRecord, stable_id

STAGE_REVERSAL = "atomic_reversal"
STAGE_SIMPLIFICATION = "atomic_simplification"
STAGE_RECOMBINATION = "atomic_recombination"
PROMPT_SIMPLIFY = ("atomic_tasks", "simplify", 1)


class Derived(NamedTuple):
    derived: beam.PCollection  # new InstructionRecords
    rejected: beam.PCollection  # RejectedRecords: source rows (and sub-tasks) left out
    failed: beam.PCollection  # FailureRecords: dead letters


def _no_failures(records: beam.PCollection) -> beam.PCollection:
    return records.pipeline | "NoFailures" >> beam.Create([])


# --- reversal --------------------------------------------------------------------------------

def _reverse_one(record: InstructionRecord, rule: ReversalRule, stage: str
                 ) -> tuple[InstructionRecord, Verdict, InstructionRecord | None]:
    verdict = judge_reversal(record, rule)
    return record, verdict, reverse(record, stage) if verdict.keep else None


class ReverseTasks(beam.PTransform):
    """Each row whose request its output determines -> the reversed task (output -> input)."""

    def __init__(self, rule: ReversalRule | None = None, stage: str = STAGE_REVERSAL) -> None:
        super().__init__()
        self._rule, self._stage = rule or ReversalRule(), stage

    def expand(self, records: beam.PCollection) -> Derived:
        routed = (records
                  | "Judge" >> beam.Map(_reverse_one, rule=self._rule, stage=self._stage)
                  | "Route" >> RouteVerdicts(self._stage, "reversal", payload=True))
        return Derived(routed.kept, routed.rejected, _no_failures(records))


# --- recombination ---------------------------------------------------------------------------

def _keyed_by_group(record: InstructionRecord, total: int, rule: RecombinationRule
                    ) -> tuple[int, InstructionRecord]:
    return group_of(record.id, total, rule), record


def _recombine(keyed: tuple[int, Iterable[InstructionRecord]], rule: RecombinationRule,
               stage: str) -> list[tuple[InstructionRecord, Verdict, InstructionRecord | None]]:
    return recombine_group(keyed[1], rule, stage)


class RecombineTasks(beam.PTransform):
    """Each row -> a multiple-choice task: its request, its answer among others of its group."""

    def __init__(self, rule: RecombinationRule | None = None, stage: str = STAGE_RECOMBINATION
                 ) -> None:
        super().__init__()
        self._rule, self._stage = rule or RecombinationRule(), stage

    def expand(self, records: beam.PCollection) -> Derived:
        total = records | "Total" >> beam.combiners.Count.Globally()
        routed = (records
                  | "Group" >> beam.Map(_keyed_by_group, total=beam.pvalue.AsSingleton(total),
                                        rule=self._rule)
                  | "ByGroup" >> beam.GroupByKey()
                  | "Recombine" >> beam.FlatMap(_recombine, rule=self._rule, stage=self._stage)
                  | "Route" >> RouteVerdicts(self._stage, "recombination", payload=True))
        return Derived(routed.kept, routed.rejected, _no_failures(records))


# --- simplification --------------------------------------------------------------------------

def simplify_sampling() -> SamplingConfig:
    # Greedy: a split is an analysis of the row, not a creative answer; reruns hit the cache.
    return SamplingConfig(max_tokens=512, temperature=0.0)


@dataclass(frozen=True)
class SimplifySettings:
    rule: SimplifyRule = field(default_factory=SimplifyRule)
    max_subtasks: int = 4
    max_subtask_chars: int = 600  # the schema's maxLength per field
    grounded: bool = True  # a sub-task's answer must be a passage of the source answer
    min_request_overlap: float = MIN_REQUEST_OVERLAP  # grounded: sub-request vs source request
    api: Literal["chat", "completions"] = "chat"
    structured_output: bool = True  # vLLM JSON-schema decoding; needs the server flag
    sampling: SamplingConfig = field(default_factory=simplify_sampling)


def simplify_request(record: InstructionRecord, settings: SimplifySettings, seed: int,
                     stage: str) -> GenerationRequest:
    """One greedy request per candidate row; the row rides along as the request's context."""
    template = load_prompt(*PROMPT_SIMPLIFY)
    request_id = stable_id(RECIPE, STAGE_SIMPLIFICATION, record.id)
    extra = None
    if settings.structured_output:
        schema = subtask_schema(settings.max_subtasks, settings.max_subtask_chars)
        extra = {"structured_outputs": {"json": schema}}
    prompt = template.render(request=record.instruction.strip(), input=record.input.strip(),
                             response=record.output.strip(),
                             max_subtasks=settings.max_subtasks,
                             assistant_cue=settings.api == "completions")
    return GenerationRequest(
        request_id=request_id, stage=stage, round=0, subject_id=record.id, prompt=prompt,
        prompt_ref=template.ref, sampling=settings.sampling.as_request(),
        seed=derive_seed(seed, request_id), api=settings.api, context=record,
        extra_body=extra)


DECIDED = "decided"


class _SelectFn(beam.DoFn):
    """Candidates -> generator requests; the rest are decided here (rejected, with a reason)."""

    def __init__(self, settings: SimplifySettings, seed: int, stage: str) -> None:
        self._settings, self._seed, self._stage = settings, seed, stage

    def process(self, record: InstructionRecord) -> Iterable[Any]:
        verdict = judge_simplification_candidate(record, self._settings.rule)
        if verdict.keep:
            yield simplify_request(record, self._settings, self._seed, self._stage)
        else:
            yield beam.pvalue.TaggedOutput(DECIDED, (record, verdict, None))


class _ParseFn(beam.DoFn):
    """An answer -> the source row's decision (with its kept sub-task rows), the sub-task
    rejections, or a dead letter holding the raw answer when it cannot be read."""

    def __init__(self, settings: SimplifySettings, identity: GeneratorIdentity, stage: str
                 ) -> None:
        self._settings, self._provenance = settings, Provenance(identity)
        self._parse, self._subtasks = f"{stage}_parse", f"{stage}_subtasks"

    def process(self, outcome: GenerationOutcome) -> Iterable[Any]:
        assert outcome.completion is not None
        req, text = outcome.request, outcome.completion.text
        source: InstructionRecord = req.context
        count(self._parse, "in")
        parsed = parse_subtasks(text, outcome.completion.finish_reason,
                                self._settings.max_subtasks)
        if not parsed.ok:
            count(self._parse, "failed")
            yield beam.pvalue.TaggedOutput(FAILED, FailureRecord(
                id=stable_id(RECIPE, "failure", req.request_id, "parse"), recipe=RECIPE,
                stage=self._parse, round=req.round, subject_id=source.id,
                error_class=parsed.error or "unknown",
                message=f"{parsed.detail}; raw answer: {text}", attempts=outcome.attempts,
                generator=self._provenance.identity.model, prompt_ref=req.prompt_ref,
                prompt_sha256=req.prompt_sha256))
            return
        count(self._parse, "ok")
        judged = judge_subtasks(parsed.subtasks, source, self._settings.grounded,
                                self._settings.min_request_overlap)
        if len(judged) < 2:  # a "split" into one part is no split
            judged = [(sub, Verdict.drop(Reason.NOT_DECOMPOSABLE, "fewer than 2 sub-tasks"))
                      for sub, _ in judged]
        kept = []
        for part, (sub, verdict) in enumerate(judged):
            row = self._provenance.stamp(simplified(source, sub, part, self._subtasks), outcome)
            count(self._subtasks, "produced")
            if verdict.keep:
                count(self._subtasks, "kept")
                kept.append(row)
                continue
            assert verdict.reason is not None
            count(self._subtasks, f"rejected/{verdict.reason.value}")
            yield beam.pvalue.TaggedOutput(REJECTED, RejectedRecord(
                row, self._subtasks, "subtask", verdict.reason.value, verdict.score,
                verdict.detail))
        if kept:
            yield source, Verdict.ok(float(len(kept))), kept
        elif len(judged) < 2:
            yield source, Verdict.drop(Reason.NOT_DECOMPOSABLE,
                                       f"{len(judged)} sub-task(s) proposed"), None
        else:
            yield source, Verdict.drop(Reason.NO_USABLE_SUBTASKS,
                                       f"all {len(judged)} sub-tasks rejected"), None


def _rows(rows: list[InstructionRecord]) -> list[InstructionRecord]:
    return rows


class SimplifyTasks(beam.PTransform):
    """Multi-part rows -> one row per sub-task, split by the generator, answers taken from
    the source answer. Requests go through `Generate` (cache, retries, dead letters)."""

    def __init__(self, handler: GeneratorModelHandler, identity: GeneratorIdentity,
                 settings: SimplifySettings | None = None, seed: int = 0,
                 stage: str = STAGE_SIMPLIFICATION) -> None:
        super().__init__()
        self._handler, self._identity = handler, identity
        self._settings, self._seed, self._stage = settings or SimplifySettings(), seed, stage

    def expand(self, records: beam.PCollection) -> Derived:
        stage, generate = self._stage, f"{self._stage}_generate"
        selected = records | "Select" >> beam.ParDo(
            _SelectFn(self._settings, self._seed, generate)).with_outputs(DECIDED, main="requests")
        answers = selected.requests | "Generate" >> stage_generator(
            self._handler, self._identity, RECIPE)(generate)
        parsed = answers.ok | "Parse" >> beam.ParDo(
            _ParseFn(self._settings, self._identity, stage)).with_outputs(
                REJECTED, FAILED, main="decided")
        routed = ((selected[DECIDED], parsed.decided) | "Decisions" >> beam.Flatten()
                  | "Route" >> RouteVerdicts(stage, "simplification", payload=True))
        derived = routed.kept | "SubtaskRows" >> beam.FlatMap(_rows)
        rejected = ((routed.rejected, parsed[REJECTED]) | "Rejected" >> beam.Flatten())
        failed = ((answers.failed, parsed[FAILED]) | "Failed" >> beam.Flatten())
        return Derived(derived, rejected, failed)
