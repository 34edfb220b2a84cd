"""The configured filter chain (rules, novelty, near duplicates) and the plain dataset input.

Every recipe runs the same chain over its dataset, in that order; recipes that sample
(Explore-Instruct, #InsTag) run it before sampling, so nothing drops a sampled row.
"""

from __future__ import annotations

from pathlib import Path

import apache_beam as beam

from filters.near_dup import MinHashParams
from filters.rules import RuleConfig
from pipelines.errors import InputError
from pipelines.settings import FiltersConfig, InputConfig, RulesConfig
from pipelines.transforms.dataset_input import ReadDataset, input_order
from pipelines.transforms.near_dup import NearDuplicateFilter
from pipelines.transforms.novelty import NoveltyFilter
from pipelines.transforms.route import count
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
                      require_output=cfg.require_output, normalize=cfg.normalize)


def apply_filters(dataset: beam.PCollection, filters: FiltersConfig, prefix: str = ""
                  ) -> tuple[beam.PCollection, list[beam.PCollection]]:
    """(kept rows, the rejected collections of each enabled filter). `prefix` goes before
    every stage name and label: a chained step (`then:`) runs the chain a second time."""
    rejected = []
    if filters.rules.enabled:
        routed = dataset | f"{prefix}Rules" >> RuleFilter(rule_config(filters.rules),
                                                          stage=prefix + STAGE_RULES)
        dataset = routed.kept
        rejected.append(routed.rejected)
    if filters.novelty.enabled:
        routed = dataset | f"{prefix}Novelty" >> NoveltyFilter(
            threshold=filters.novelty.threshold, order_by=input_order,
            stage=prefix + "dedup_novelty")
        dataset = routed.kept
        rejected.append(routed.rejected)
    if filters.near_dup.enabled:
        nd = filters.near_dup
        params = MinHashParams(num_perm=nd.num_perm, bands=nd.bands, rows=nd.rows,
                               shingle_size=nd.shingle_size, threshold=nd.threshold,
                               seed=nd.seed)
        routed = dataset | f"{prefix}NearDup" >> NearDuplicateFilter(
            params, order_by=input_order, stage=prefix + "near_dup")
        dataset = routed.kept
        rejected.append(routed.rejected)
    return dataset, rejected
