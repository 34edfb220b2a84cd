"""Quality scoring as Beam transforms: scorers that add named scores, and `ScoreFilter`.

Score, then threshold (NeMo Curator's split). A scorer never drops a row: it adds its scores
to `InstructionRecord.scores` (and counts every row as produced and kept in its stage), so
the output shows the measurement and a threshold becomes a query. `ScoreFilter` is the
decision: it keeps rows whose score lies in a window and rejects the rest with a reason code
and the deciding score, like every other filter.

* `TextStatsScorer`: filters/text_stats.py (length ratio, repeated n-grams, non-ASCII share,
  unfinished sentence); microseconds a row.
* `LlmJudgeScorer`: the generator rates each row 1..scale with a one-line rationale
  (prompts/quality/judge.v<N>.jinja), greedy, JSON-schema decoded, through the response
  cache. A failed request and an answer that does not parse are dead letters (the raw answer
  is kept in the failure's message); the row goes on without the score, and a `ScoreFilter`
  on it rejects it as `missing_score`.
* `ClassifierScorer`: a logistic regression over sentence embeddings, trained by
  `instructbeam train-classifier` (filters/quality_classifier.py), loaded once per worker in
  `DoFn.setup`; rows are scored in batches (the embedder is much faster per batch).

Use from any Beam pipeline of InstructionRecords::

    scored = records | "Stats" >> TextStatsScorer()
    routed = scored | "Short" >> ScoreFilter("output_prompt_ratio", minimum=0.2)
    routed.kept, routed.rejected  # rejected: score_below_min / score_above_max / missing_score
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

import apache_beam as beam

from filters.judge_fit import CHAT_OVERHEAD_TOKENS, estimate_tokens, fit_fields
from filters.quality import LLM_JUDGE, dialogue_scores, score_verdict, with_scores
from filters.quality_classifier import ClassifierModel, load_classifier
from filters.quality_judge import JudgeAnswer, judge_schema, parse_judge_answer
from filters.text_stats import text_stats
from pipelines.generators.backends import GeneratorIdentity
from pipelines.generators.generation import GenerationOutcome, GenerationRequest
from pipelines.generators.handler import GeneratorModelHandler
from pipelines.settings import LlmJudgeConfig, SamplingConfig
from pipelines.transforms.provenance import derive_seed
from pipelines.transforms.route import FAILED, Routed, RouteVerdicts, count, stage_generator
from prompts import load_prompt
from schemas import FailureRecord, InstructionRecord, Reason, exchanges, stable_id

FILTER_NAME = "score"
# The judge's context when neither the config nor the server's arguments say
# (DEFAULT_SERVER_ARGS: `--max-model-len 4096`).
DEFAULT_JUDGE_CONTEXT = 4096


def _count_scored(stage: str) -> None:
    count(stage, "produced")
    count(stage, "kept")


# --- text statistics -------------------------------------------------------------------------

def _add_text_stats(record: InstructionRecord, stage: str) -> InstructionRecord:
    _count_scored(stage)
    return with_scores(record, text_stats(record.instruction, record.input, record.output))


class TextStatsScorer(beam.PTransform):
    """Records -> the same records with the text statistics in `scores`."""

    def __init__(self, stage: str = "text_stats") -> None:
        super().__init__()
        self._stage = stage

    def expand(self, records: beam.PCollection) -> beam.PCollection:
        return records | "Measure" >> beam.Map(_add_text_stats, stage=self._stage)


# --- LLM judge -------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class JudgeModel:
    """The generator that judges: the run's handler and identity, the recipe name its failure
    records carry, and the run seed (greedy decoding ignores it, but every request has one)."""

    handler: GeneratorModelHandler
    identity: GeneratorIdentity
    recipe: str
    seed: int
    context_tokens: int | None = None  # the served model's context, when the run knows it


def judge_key(record: InstructionRecord) -> str:
    """What a judge answer is joined back to its row by: the id *and* every text the judge
    read, so two rows that share an id (a pipeline that derived or merged rows) each get
    their own rating, never one rating for both. Rows equal in id and text share a key and,
    being the same question, the same answer."""
    return stable_id("judge-row", record.id, record.instruction, record.input, record.output)


def judge_fields(instruction: str, input_text: str, output: str, cfg: LlmJudgeConfig,
                 template: Any) -> dict[str, str]:
    """The texts the judge rates (a row's, or one exchange of a dialogue), as it sees them:
    whole when the prompt fits the model's context (`context_tokens`, less the answer's
    `max_tokens`, the template and the chat markup), else cut by the tokens that do not fit,
    with a note in the gap (filters/judge_fit.py)."""
    fields = {"instruction": instruction.strip(), "input": input_text.strip(),
              "output": output.strip()}
    frame = estimate_tokens(template.render(scale=cfg.scale, instruction="", input="x",
                                            output=""))
    context = cfg.context_tokens or DEFAULT_JUDGE_CONTEXT
    budget = context - cfg.max_tokens - CHAT_OVERHEAD_TOKENS - frame
    return fit_fields(fields, budget)[0]


def judge_requests(record: InstructionRecord, cfg: LlmJudgeConfig, seed: int, stage: str
                   ) -> list[GenerationRequest]:
    """The judge's requests for a row: one; for a dialogue, one per assistant reply (the user
    turn as the instruction, the conversation before it as the input), so a bad fourth
    answer is seen. Each request's `context` names the reply it rates."""
    turns = exchanges(record)
    return [judge_request(record, cfg, seed, stage, exchange=None if len(turns) == 1 and
                          turns[0][0] == "output" else exchange) for exchange in turns]


def judge_request(record: InstructionRecord, cfg: LlmJudgeConfig, seed: int, stage: str,
                  exchange: tuple[str, str, str, str] | None = None) -> GenerationRequest:
    """One greedy chat request rating `record` (or one `exchange` of a dialogue). The seed
    comes from the prompt, not the row id, so the same text judged in another run (or
    step) is a cache hit."""
    template = load_prompt("quality", "judge", cfg.prompt_version)
    turn, instruction, input_text, output = exchange or (
        None, record.instruction, record.input, record.output)
    prompt = template.render(scale=cfg.scale, **judge_fields(
        instruction, input_text, output, cfg, template))
    extra = ({"structured_outputs": {"json": judge_schema(cfg.scale, cfg.max_rationale_chars)}}
             if cfg.structured_output else None)
    return GenerationRequest(
        request_id=stable_id("quality", LLM_JUDGE, record.id, *([turn] if turn else [])),
        stage=stage, round=0, subject_id=record.id, prompt=prompt, prompt_ref=template.ref,
        sampling=SamplingConfig(max_tokens=cfg.max_tokens, temperature=0.0).as_request(),
        seed=derive_seed(seed, LLM_JUDGE, stable_id(prompt)), api="chat", extra_body=extra,
        context=(judge_key(record), turn or "output"))


class _ParseAnswerFn(beam.DoFn):
    """Outcome -> (judge_key of its row, (the reply it rates, JudgeAnswer)), or a FailureRecord
    keeping the raw answer.

    Counted as its own stage (`<stage>_answer`: in = ok + failed), beside the request stage."""

    def __init__(self, cfg: LlmJudgeConfig, stage: str, recipe: str, generator: str) -> None:
        self._cfg, self._stage = cfg, stage
        self._recipe, self._generator = recipe, generator

    def process(self, outcome: GenerationOutcome) -> Iterator[Any]:
        assert outcome.completion is not None
        req, text = outcome.request, outcome.completion.text
        count(self._stage, "in")
        answer = parse_judge_answer(text, outcome.completion.finish_reason, self._cfg.scale,
                                    self._cfg.max_rationale_chars)
        if answer.ok:
            count(self._stage, "ok")
            key, turn = req.context
            yield key, (turn, answer)
            return
        count(self._stage, "failed")
        yield beam.pvalue.TaggedOutput(FAILED, FailureRecord(
            id=stable_id(self._recipe, "failure", req.request_id, "answer"),
            recipe=self._recipe, stage=self._stage, round=req.round,
            subject_id=req.subject_id, error_class=Reason.UNPARSABLE_RESPONSE.value,
            message=f"{answer.problem}; raw answer: {text}", attempts=outcome.attempts,
            generator=self._generator, prompt_ref=req.prompt_ref,
            prompt_sha256=req.prompt_sha256))


def _attach_judgement(element: tuple[str, dict[str, Iterable[Any]]], stage: str
                      ) -> Iterator[InstructionRecord]:
    """A row's score; a dialogue's is its worst reply's (each reply's kept, named by turn),
    and only when every reply was judged; the rationale is the worst reply's."""
    _, grouped = element
    answers: dict[str, JudgeAnswer] = dict(grouped["answer"])
    for record in grouped["record"]:
        _count_scored(stage)
        wanted = [turn for turn, *_ in exchanges(record)]
        if wanted and all(t in answers and answers[t].score is not None for t in wanted):
            per_turn = [(t, float(answers[t].score)) for t in wanted]  # type: ignore[arg-type]
            worst = min(per_turn, key=lambda tv: tv[1])[0]
            rationale = answers[worst].rationale
            if worst != "output":
                rationale = f"{worst}: {rationale}"
            yield with_scores(record, dialogue_scores(LLM_JUDGE, per_turn),
                              judge_rationale=rationale)
        else:  # a request or an answer is a dead letter: no score, nothing dropped here
            yield record


class Scored(NamedTuple):
    records: beam.PCollection  # every input record, with the score where it was measured
    failed: beam.PCollection  # FailureRecord: failed requests and unparsable answers


class LlmJudgeScorer(beam.PTransform):
    """Records -> Scored(records with `llm_judge` and `judge_rationale`, dead letters)."""

    def __init__(self, judge: JudgeModel, cfg: LlmJudgeConfig, stage: str = LLM_JUDGE) -> None:
        super().__init__()
        self._judge, self._cfg, self._stage = judge, cfg, stage

    def expand(self, records: beam.PCollection) -> Scored:
        judge, cfg, stage = self._judge, self._cfg, self._stage
        if cfg.context_tokens is None and judge.context_tokens:  # the server's own limit
            cfg = dataclasses.replace(cfg, context_tokens=judge.context_tokens)
        answers = (
            records
            | "Requests" >> beam.FlatMap(judge_requests, cfg=cfg, seed=judge.seed, stage=stage)
            | "Generate" >> stage_generator(judge.handler, judge.identity, judge.recipe)(stage)
        )
        parsed = answers.ok | "Parse" >> beam.ParDo(_ParseAnswerFn(
            cfg, f"{stage}_answer", judge.recipe, judge.identity.model)).with_outputs(
            FAILED, main="answers")
        scored = (
            {"record": records | "ById" >> beam.Map(lambda r: (judge_key(r), r)),
             "answer": parsed.answers}
            | "Join" >> beam.CoGroupByKey()
            | "Attach" >> beam.FlatMap(_attach_judgement, stage=stage)
        )
        failed = ((answers.failed, parsed[FAILED]) | "Failed" >> beam.Flatten())
        return Scored(scored, failed)


# --- learned classifier ----------------------------------------------------------------------

class _ClassifyFn(beam.DoFn):
    """Scores a batch of records; the model is read once per DoFn instance (worker thread),
    the embedder once per process (filters.tag_embeddings caches it)."""

    def __init__(self, model_dir: str, stage: str) -> None:
        self._model_dir, self._stage = model_dir, stage
        self._model: ClassifierModel | None = None

    def setup(self) -> None:
        self._model = load_classifier(self._model_dir)

    def process(self, batch: list[InstructionRecord]) -> Iterator[InstructionRecord]:
        """Every reply scored: a row's one, each assistant turn of a dialogue (the user turn
        before it as the prompt, no history: the classifier was trained on single turns);
        a dialogue keeps its worst reply's probability, each reply's named beside it."""
        assert self._model is not None
        turns = [exchanges(r) for r in batch]
        probabilities = iter(self._model.score([
            (asked, "" if record.messages else context, reply)
            for record, ex in zip(batch, turns, strict=True) for _, asked, context, reply in ex]))
        for record, ex in zip(batch, turns, strict=True):
            _count_scored(self._stage)
            per_turn = [(name, float(next(probabilities))) for name, *_ in ex]
            yield with_scores(record, dialogue_scores(self._model.score_name, per_turn))


class ClassifierScorer(beam.PTransform):
    """Records -> the same records with `classifier` = P(good) in `scores`."""

    def __init__(self, model_dir: str, stage: str = "classifier", batch_size: int = 64) -> None:
        super().__init__()
        self._model_dir, self._stage, self._batch = model_dir, stage, batch_size

    def expand(self, records: beam.PCollection) -> beam.PCollection:
        return (records
                | "Batch" >> beam.BatchElements(min_batch_size=1, max_batch_size=self._batch)
                | "Classify" >> beam.ParDo(_ClassifyFn(self._model_dir, self._stage)))


# --- the threshold ---------------------------------------------------------------------------

class ScoreFilter(beam.PTransform):
    """Keep records whose score `name` lies in [minimum, maximum]; reject the rest with
    `score_below_min` / `score_above_max` (score = the value) or `missing_score`."""

    def __init__(self, name: str, *, minimum: float | None = None,
                 maximum: float | None = None, stage: str | None = None) -> None:
        super().__init__()
        if minimum is None and maximum is None:
            raise ValueError(f"ScoreFilter({name!r}) needs a minimum or a maximum")
        self._name, self._min, self._max = name, minimum, maximum
        self._stage = stage or f"score_filter/{name}"

    def expand(self, records: beam.PCollection) -> Routed:
        name, lo, hi = self._name, self._min, self._max
        return (records
                | "Judge" >> beam.Map(lambda r: (r, score_verdict(r, name, lo, hi)))
                | "Route" >> RouteVerdicts(self._stage, f"{FILTER_NAME}:{name}"))
