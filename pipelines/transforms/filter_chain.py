"""The configured filter chain and the plain dataset input.

Every recipe runs the same chain over its dataset: rules -> scorers (text statistics, LLM
judge, classifier) -> score filters -> novelty -> near duplicates by default, or the steps
`filters.order` lists, in its order. Recipes that sample (Explore-Instruct, #InsTag) run it
before sampling, so nothing drops a sampled row. Each step counts in its own stage
(`instructbeam/stage/<stage>`), so the manifest, report and card show every step's numbers.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import apache_beam as beam

from filters.near_dup import MinHashParams
from filters.quality import CLASSIFIER, LLM_JUDGE, TEXT_STATS_SCORER
from filters.quality_classifier import LabelError, load_classifier
from filters.rules import RuleConfig
from filters.tag_embeddings import REQUIRES
from pipelines.errors import InputError
from pipelines.settings import SCORE_FILTERS, FiltersConfig, InputConfig, RulesConfig
from pipelines.transforms.dataset_input import ReadDataset, input_order
from pipelines.transforms.near_dup import NearDuplicateFilter
from pipelines.transforms.novelty import NoveltyFilter
from pipelines.transforms.quality import (
    ClassifierScorer,
    JudgeModel,
    LlmJudgeScorer,
    ScoreFilter,
    TextStatsScorer,
)
from pipelines.transforms.route import Routed, count
from pipelines.transforms.rules import RuleFilter
from schemas import InstructionRecord

STAGE_RULES = "rules"
STAGE_INPUT = "input"


def read_input(p: beam.Pipeline, cfg: InputConfig) -> beam.PCollection:
    """An existing dataset as InstructionRecords, counted as the `input` stage."""
    return p | "Input" >> ReadDataset(cfg) | "CountInput" >> beam.Map(count_input)


def count_input(record: InstructionRecord) -> InstructionRecord:
    count(STAGE_INPUT, "produced")
    count(STAGE_INPUT, "kept")
    return record


def rule_config(cfg: RulesConfig) -> RuleConfig:
    words = list(cfg.illegal_words)
    if cfg.illegal_words_file:
        path = Path(cfg.illegal_words_file)
        try:
            words += [w.strip() for w in path.read_text(encoding="utf-8").splitlines()
                      if w.strip() and not w.startswith("#")]
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"{path}: cannot read the illegal-word list ({exc})") from None
    return RuleConfig(illegal_words=tuple(words), max_chars=cfg.max_chars,
                      require_output=cfg.require_output, normalize=cfg.normalize,
                      reject_fragments=cfg.reject_fragments)


def check_scorers(filters: FiltersConfig) -> None:
    """Before anything is written: the classifier artifact reads and its embedder's packages
    are importable (a worker would otherwise fail on its first batch)."""
    if CLASSIFIER not in filters.steps():
        return
    model_dir = filters.scorers.classifier.model_dir
    try:
        model = load_classifier(model_dir or "")
    except LabelError as exc:
        raise InputError(f"filters.scorers.classifier.model_dir: {exc}") from None
    missing = [m for m in REQUIRES.get(model.embedding, ())
               if importlib.util.find_spec(m) is None]
    if missing:
        raise InputError(f"filters.scorers.classifier: {', '.join(missing)} not installed; "
                         "pip install 'instructbeam[quality]'")


class Filtered(NamedTuple):
    kept: beam.PCollection
    rejected: list[beam.PCollection]  # each filter step's RejectedRecords
    failed: list[beam.PCollection]  # dead letters (the LLM judge's failed requests/answers)


def apply_filters(dataset: beam.PCollection, filters: FiltersConfig, prefix: str = "", *,
                  judge: JudgeModel | None = None) -> Filtered:
    """Run the configured steps in `filters.order` (default: rules -> scorers -> score
    filters -> novelty -> near duplicates). `prefix` goes before every stage name and label:
    a chained step (`then:`) runs the chain a second time. `judge` is the generator the
    `llm_judge` scorer calls (the run's own); without one that scorer is a config error."""
    out = Filtered(dataset, [], [])
    for step in filters.steps():
        out = _STEPS[step](out, filters, prefix, judge)
    return out


Step = Callable[[Filtered, FiltersConfig, str, "JudgeModel | None"], Filtered]


def _routed(out: Filtered, routed: Routed) -> Filtered:
    return Filtered(routed.kept, [*out.rejected, routed.rejected], out.failed)


def _rules(out: Filtered, filters: FiltersConfig, prefix: str, judge: JudgeModel | None
           ) -> Filtered:
    return _routed(out, out.kept | f"{prefix}Rules" >> RuleFilter(
        rule_config(filters.rules), stage=prefix + STAGE_RULES))


def _novelty(out: Filtered, filters: FiltersConfig, prefix: str, judge: JudgeModel | None
             ) -> Filtered:
    return _routed(out, out.kept | f"{prefix}Novelty" >> NoveltyFilter(
        threshold=filters.novelty.threshold, order_by=input_order,
        stage=prefix + "dedup_novelty"))


def _near_dup(out: Filtered, filters: FiltersConfig, prefix: str, judge: JudgeModel | None
              ) -> Filtered:
    nd = filters.near_dup
    params = MinHashParams(num_perm=nd.num_perm, bands=nd.bands, rows=nd.rows,
                           shingle_size=nd.shingle_size, threshold=nd.threshold, seed=nd.seed)
    return _routed(out, out.kept | f"{prefix}NearDup" >> NearDuplicateFilter(
        params, order_by=input_order, stage=prefix + "near_dup"))


def _text_stats(out: Filtered, filters: FiltersConfig, prefix: str, judge: JudgeModel | None
                ) -> Filtered:
    scored = out.kept | f"{prefix}TextStats" >> TextStatsScorer(prefix + TEXT_STATS_SCORER)
    return Filtered(scored, out.rejected, out.failed)


def _llm_judge(out: Filtered, filters: FiltersConfig, prefix: str, judge: JudgeModel | None
               ) -> Filtered:
    if judge is None:
        raise InputError("filters.scorers.llm_judge needs a generator to judge with, and this "
                         "step has none")
    scored = out.kept | f"{prefix}LlmJudge" >> LlmJudgeScorer(
        judge, filters.scorers.llm_judge, prefix + LLM_JUDGE)
    return Filtered(scored.records, out.rejected, [*out.failed, scored.failed])


def _classifier(out: Filtered, filters: FiltersConfig, prefix: str, judge: JudgeModel | None
                ) -> Filtered:
    model_dir = filters.scorers.classifier.model_dir
    assert model_dir is not None  # the config checked it
    scored = out.kept | f"{prefix}Classifier" >> ClassifierScorer(model_dir, prefix + CLASSIFIER)
    return Filtered(scored, out.rejected, out.failed)


def _score_filters(out: Filtered, filters: FiltersConfig, prefix: str,
                   judge: JudgeModel | None) -> Filtered:
    for sf in filters.score_filters:
        low, high = sf.bounds()
        out = _routed(out, out.kept | f"{prefix}ScoreFilter/{sf.score}" >> ScoreFilter(
            sf.score, minimum=low, maximum=high, stage=f"{prefix}score_filter/{sf.score}"))
    return out


# Every step `filters.order` may name (settings.FILTER_STEPS, "scorers" expanded).
_STEPS: dict[str, Step] = {
    "rules": _rules,
    TEXT_STATS_SCORER: _text_stats,
    LLM_JUDGE: _llm_judge,
    CLASSIFIER: _classifier,
    SCORE_FILTERS: _score_filters,
    "novelty": _novelty,
    "near_dup": _near_dup,
}
