"""Targets: what each recipe was asked for, what it delivered, and a `why` built from the run's
own counts (the pure part; tests/pipeline/test_targets_pipeline.py runs the recipes)."""

from __future__ import annotations

from pipelines.config import RunConfig
from pipelines.outputs import targets
from pipelines.recipes.ensemble_instruct.config import (
    EnsembleInstructConfig,
    EnsembleOutputOnlyTasksConfig,
    EnsembleTasksConfig,
    ExtraGeneratorConfig,
)
from pipelines.recipes.explore_instruct.config import ExploreInstructConfig
from pipelines.recipes.explore_instruct.targets import explore_target
from pipelines.recipes.instag.config import InsTagConfig
from pipelines.recipes.instag.targets import instag_target
from pipelines.recipes.registry import REGISTRY
from pipelines.recipes.self_instruct.config import SelfInstructConfig
from pipelines.settings import GeneratorConfig, InputConfig


def _counts(**values: int) -> dict[str, int]:
    return dict(values)


def test_bootstrap_target_missed_by_the_prompt_budget_names_the_main_cause():
    t = targets.bootstrap_target(40, 16, _counts(prompts=16, answers=15, candidates=30,
                                                 dropped=9, novel=12, not_novel=18))
    assert t == {"wanted": 40, "got": 12, "met": False, "why": (
        "max_prompts=16 reached after 16 prompts, 1 failed; too few novel answers (30 "
        "candidate instructions, 18 not novel; 9 dropped by the heuristics)")}


def test_bootstrap_target_whose_requests_failed_says_so():
    t = targets.bootstrap_target(10, 4, _counts(prompts=4, answers=1, candidates=1, novel=1))
    assert not t["met"]
    assert t["why"] == ("max_prompts=4 reached after 4 prompts, 3 failed; most generator "
                        "requests failed (1 candidate instruction, 0 not novel; 0 dropped by "
                        "the heuristics)")


def test_bootstrap_target_of_a_lane_whose_generator_kept_failing():
    t = targets.bootstrap_target(10, 400, _counts(prompts=52, answers=2, candidates=3,
                                                  novel=3, stopped_failing=1))
    assert t["why"].startswith("stopped: the generator failed every recent prompt after 52 "
                               "prompts, 50 failed; most generator requests failed")


def test_bootstrap_target_short_of_prompts_without_a_dominant_loss_gives_the_counts():
    t = targets.bootstrap_target(50, 4, _counts(prompts=4, answers=4, candidates=8, novel=8))
    assert t["why"] == ("max_prompts=4 reached after 4 prompts (8 candidate instructions, 0 not "
                        "novel; 0 dropped by the heuristics)")


def test_bootstrap_target_mostly_dropped_by_heuristics_says_so():
    t = targets.bootstrap_target(10, 2, _counts(prompts=2, answers=2, candidates=3,
                                                dropped=7, novel=3))
    assert "; most instructions failed the heuristics (3 candidate" in t["why"]


def test_bootstrap_target_met_says_when():
    t = targets.bootstrap_target(8, 20, _counts(prompts=6, answers=6, candidates=14,
                                                novel=9, not_novel=5))
    assert t == {"wanted": 8, "got": 9, "met": True, "why": "reached after 6 prompts"}


def test_bootstrap_target_with_lanes_counts_the_cross_lane_repeats():
    c = _counts(prompts=6, answers=6, candidates=14, novel=10, lane_duplicates=3)
    met = targets.bootstrap_target(7, 20, c)
    assert met == {"wanted": 7, "got": 7, "met": True,
                   "why": "reached after 6 prompts; 3 repeated across lanes"}
    missed = targets.bootstrap_target(9, 20, c)
    assert missed["got"] == 7 and missed["why"].startswith(
        "the lanes reached their shares after 6 prompts; 3 repeated across lanes")


def test_explore_pool_exhausted_lists_what_shrank_it():
    cfg = RunConfig(recipe="explore_instruct", output_dir="x", explore_instruct=(
        ExploreInstructConfig(root_task="Editing", sample_size=60, sample_max_depth=1)))
    stages = {"explore_filter": {"produced": 50, "kept": 40,
                                 "rejected": {"not_novel": 10}},
              "explore_sample": {"produced": 40, "kept": 31,
                                 "rejected": {"beyond_sample_depth": 6, "pruned_task": 3}}}
    t = explore_target(cfg, stages)
    assert t == {"wanted": 60, "got": 31, "met": False, "why": (
        "pool exhausted: only 31 examples eligible for the sample (10 not novel in their node, "
        "6 deeper than sample_max_depth=1, 3 from pruned nodes)")}


def test_explore_short_allocation_with_a_large_pool_blames_the_allocation():
    cfg = RunConfig(recipe="explore_instruct", output_dir="x", explore_instruct=(
        ExploreInstructConfig(root_task="Editing", sample_size=60)))
    stages = {"explore_sample": {"produced": 80, "kept": 55,
                                 "rejected": {"not_sampled": 25}}}
    t = explore_target(cfg, stages)
    assert not t["met"] and t["why"].startswith("the per-node allocation drew 55 of 80")


def test_instag_pool_exhausted_counts_every_loss():
    cfg = RunConfig(recipe="instag", output_dir="x", input=InputConfig(path="q.jsonl"),
                    instag=InsTagConfig(sample_size=20))
    stages = {"input": {"produced": 25, "kept": 25, "rejected": {}},
              "rules": {"produced": 25, "kept": 22, "rejected": {"too_long": 3}},
              "instag_tag": {"in": 22, "ok": 21, "failed": 1, "produced": 22, "kept": 19,
                             "rejected": {"unparsable_response": 2, "task_failed_upstream": 1}},
              "instag_sample": {"produced": 19, "kept": 17, "rejected": {"no_tags": 2}}}
    t = instag_target(cfg, stages)
    assert t == {"wanted": 20, "got": 17, "met": False, "why": (
        "pool exhausted: only 17 taggable queries reached Cf-D (25 input rows; 3 dropped by "
        "the filters, 3 with unusable tag answers, 1 tag requests failed, 2 without tags "
        "after normalization)")}


def compute(cfg, stages, counters):
    """The manifest's `targets`: the recipe's own entry computes them."""
    return REGISTRY[cfg.recipe].targets(cfg, stages, counters)


def test_every_recipe_with_a_target_has_one_and_filter_has_none():
    si = RunConfig(recipe="self_instruct", output_dir="x",
                   self_instruct=SelfInstructConfig(num_instructions=5, max_prompts=1))
    assert list(compute(si, {}, {})) == ["self_instruct.num_instructions"]
    extras = tuple(ExtraGeneratorConfig(name=n, generator=GeneratorConfig()) for n in "xy")
    ens = RunConfig(recipe="ensemble_instruct", output_dir="x", ensemble_instruct=(
        EnsembleInstructConfig(type_a=EnsembleTasksConfig(num_instructions=3),
                               type_b=EnsembleOutputOnlyTasksConfig(num_instructions=0),
                               extra_generators=extras)))
    counters = {"instructbeam/target/ensemble_instruct.type_a.num_instructions": _counts(
        prompts=5, answers=5, candidates=4, novel=3, not_novel=1),
        "instructbeam/stage/novelty": {"produced": 4, "kept": 3}}
    assert compute(ens, {}, counters) == {"ensemble_instruct.type_a.num_instructions": {
        "wanted": 3, "got": 3, "met": True,
        "why": "reached after 5 prompts"}}
    tagged = RunConfig(recipe="instag", output_dir="x", input=InputConfig(path="q.jsonl"))
    assert list(compute(tagged, {}, {})) == ["instag.sample_size"]
    untargeted = RunConfig(recipe="instag", output_dir="x", input=InputConfig(path="q.jsonl"),
                           instag=InsTagConfig(sample_size=None))
    assert compute(untargeted, {}, {}) == {}
    assert compute(RunConfig(recipe="filter", output_dir="x",
                                     input=InputConfig(path="q.jsonl")), {}, {}) == {}


def test_describe_and_missed():
    manifest = {"targets": {"a": {"wanted": 2, "got": 2, "met": True, "why": "w"},
                            "b": {"wanted": 5, "got": 1, "met": False, "why": "v"}}}
    assert list(targets.missed(manifest)) == ["b"]
    assert targets.describe("b", manifest["targets"]["b"]) == "b: NOT MET, wanted 5, got 1 (v)"
    assert targets.missed({}) == {}
