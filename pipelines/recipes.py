"""Recipe assembly: each recipe is one readable function; the filter chain is shared.

A recipe yields its dataset (the records that become `data/`), extra tables (e.g. the
accepted instructions), and its rejected and failed collections. The configured filters
(rules, novelty, near duplicates) then run over the dataset of any recipe, in that order;
recipes that sample (Explore-Instruct, #InsTag) run them first, so nothing drops a sampled row.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import apache_beam as beam

from filters.rules import RuleConfig
from pipelines.config import RulesConfig, RunConfig
from pipelines.dataset_input import ReadDataset, input_order
from pipelines.errors import InputError
from pipelines.handler import GeneratorIdentity, GeneratorModelHandler
from pipelines.rules import RuleFilter
from pipelines.seeds import SeedTask
from pipelines.self_instruct import build_self_instruct
from pipelines.transforms import count
from schemas import InstructionRecord

STAGE_RULES = "rules"
STAGE_INPUT = "input"


@dataclass
class RecipeOutputs:
    dataset: beam.PCollection
    tables: dict[str, beam.PCollection] = field(default_factory=dict)
    rejected: list[beam.PCollection] = field(default_factory=list)
    failed: list[beam.PCollection] = field(default_factory=list)
    # Extra outputs written by their own transform: name -> (items, directory -> PTransform).
    files: dict[str, tuple[beam.PCollection, Callable[[str], beam.PTransform]]] = field(
        default_factory=dict)


def build_recipe(p: beam.Pipeline, cfg: RunConfig, seeds: list[SeedTask],
                 handler: GeneratorModelHandler | None,
                 identity: GeneratorIdentity | None, *,
                 extras: Sequence[Any] | None = None) -> RecipeOutputs:
    """`extras`: Ensemble-Instruct's extra generators (`pipelines.ensemble_instruct`)."""
    if cfg.recipe == "self_instruct":
        assert handler is not None and identity is not None
        si = build_self_instruct(p, cfg, seeds, handler, identity)
        outputs = RecipeOutputs(si.instances, {"instructions": si.instructions},
                                list(si.rejected), list(si.failed))
    elif cfg.recipe == "explore_instruct":
        assert handler is not None and identity is not None
        from pipelines.explore_finish import WriteTree
        from pipelines.explore_instruct import build_explore_instruct

        def clean(pool: beam.PCollection) -> tuple[beam.PCollection, list[beam.PCollection]]:
            cleaned = apply_filters(RecipeOutputs(pool), cfg)
            return cleaned.dataset, cleaned.rejected

        ex = build_explore_instruct(p, cfg, handler, identity, clean)
        write_tree = functools.partial(WriteTree, sample_size=cfg.explore_instruct.sample_size)
        return RecipeOutputs(ex.dataset, {"nodes": ex.nodes}, list(ex.rejected),
                             list(ex.failed), files={"tree": (ex.tree_items, write_tree)})
    elif cfg.recipe == "ensemble_instruct":
        assert handler is not None and identity is not None
        from pipelines.ensemble_instruct import build_ensemble_instruct

        en = build_ensemble_instruct(p, cfg, seeds, handler, identity, extras or ())
        outputs = RecipeOutputs(en.instances, {"instructions": en.instructions},
                                list(en.rejected), list(en.failed))
    elif cfg.recipe == "instag":
        assert handler is not None and identity is not None
        from pipelines.instag import build_instag

        return build_instag(p, cfg, handler, identity)  # runs the filters before tagging
    else:
        assert cfg.input is not None
        records = (p | "Input" >> ReadDataset(cfg.input)
                   | "CountInput" >> beam.Map(_count_input))
        outputs = RecipeOutputs(records)
    return apply_filters(outputs, cfg)


def _count_input(record: InstructionRecord) -> InstructionRecord:
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


def apply_filters(outputs: RecipeOutputs, cfg: RunConfig) -> RecipeOutputs:
    dataset = outputs.dataset
    filters = cfg.filters
    if filters.rules.enabled:
        rules = rule_config(filters.rules)
        routed = dataset | "Rules" >> RuleFilter(rules, stage=STAGE_RULES)
        dataset = routed.kept
        outputs.rejected.append(routed.rejected)
    if filters.novelty.enabled:
        from pipelines.novelty import NoveltyFilter

        routed = dataset | "Novelty" >> NoveltyFilter(
            threshold=filters.novelty.threshold, order_by=input_order, stage="dedup_novelty")
        dataset = routed.kept
        outputs.rejected.append(routed.rejected)
    if filters.near_dup.enabled:
        from filters.near_dup import MinHashParams
        from pipelines.near_dup import NearDuplicateFilter

        nd = filters.near_dup
        params = MinHashParams(num_perm=nd.num_perm, bands=nd.bands, rows=nd.rows,
                               shingle_size=nd.shingle_size, threshold=nd.threshold,
                               seed=nd.seed)
        routed = dataset | "NearDup" >> NearDuplicateFilter(params, order_by=input_order)
        dataset = routed.kept
        outputs.rejected.append(routed.rejected)
    outputs.dataset = dataset
    return outputs
