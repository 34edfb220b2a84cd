"""Atomic tasks through the real pipeline (FnApiRunner, HTTP client, Parquet) with a scripted
splitter: every source row leaves each transform as derived-from, rejected or failed, and
the transforms work in a plain Beam pipeline too."""

from __future__ import annotations

import json

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to
from atomic_fakes import ScriptedSplitter
from fakes import FaultPlan
from helpers import read_rows, shard_digests

from filters.atomic_tasks import RECOMBINATION, REVERSAL, SIMPLIFICATION, RecombinationRule
from pipelines.config import RunConfig
from pipelines.generators.backends import resolve_identity
from pipelines.generators.handler import GeneratorModelHandler
from pipelines.recipes.atomic_tasks.config import AtomicTasksConfig, RecombinationConfig
from pipelines.recipes.atomic_tasks.steps import STAGES, transform_accounting
from pipelines.run import run
from pipelines.settings import CacheConfig, FiltersConfig, GeneratorConfig, InputConfig, RulesConfig
from pipelines.transforms.atomic_tasks import RecombineTasks, ReverseTasks, SimplifyTasks
from pipelines.transforms.dataset_input import ToInstructionRecords

LONG = "It is a long and careful answer that names the thing and gives the reason for it."
ROWS = [
    {"instruction": "What is the capital of France?",
     "output": "Paris is the capital of France and has been for a very long time."},
    {"instruction": "Name a fruit. Then explain why it is healthy.",
     "output": "An apple is a good choice here. It is rich in fibre and vitamin C."},
    {"instruction": "List two colours. Explain which one is warmer.",
     "output": "Red and blue are two colours. Red is the warmer of the two."},
    {"instruction": "Explain GARBLE this. Then answer that.", "output": LONG},
    {"instruction": "Name ONEPART things. Then stop.", "output": LONG},
    {"instruction": "Give INVENT one. Then another.", "output": LONG},
    {"instruction": "Is the review positive?", "input": "Great food.", "output": "Yes."},
    {"instruction": "Summarize the passage.", "input": "word " * 100,
     "output": "A passage made of the same word many times over, nothing more."},
    {"instruction": "Translate to French.", "input": "The cat is asleep on the warm sofa now.",
     "output": "Le chat dort sur le canapé chaud maintenant, tranquillement."},
    {"instruction": "Give me a word.", "output": ""},
] + [{"instruction": f"Question {i}?",
       "output": f"Answer number {i} is the right one for this question here."}
      for i in range(10)]


@pytest.fixture
def splitter():
    server = ScriptedSplitter()
    server.start()
    yield server
    server.stop()


def _generator(base_url: str, attempts: int = 2) -> GeneratorConfig:
    return GeneratorConfig(backend="openai", base_url=base_url, model="scripted",
                           max_concurrency=4, timeout_s=5.0, max_attempts=attempts,
                           backoff_s=0.01, max_backoff_s=0.02)


def _config(tmp_path, base_url: str, *, out: str = "out", attempts: int = 2,
            **atomic: object) -> RunConfig:
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps({"input": ""} | r) + "\n" for r in ROWS))
    params = {"recombination": RecombinationConfig(options=3, group_size=8)} | atomic
    return RunConfig(
        recipe="atomic_tasks", output_dir=str(tmp_path / out),
        input=InputConfig(path=str(path)), generator=_generator(base_url, attempts),
        filters=FiltersConfig(rules=RulesConfig(enabled=False)),
        atomic_tasks=AtomicTasksConfig(**params),  # type: ignore[arg-type]
        cache=CacheConfig(enabled=False), num_shards=2, audit_per_source=0,
        max_failure_ratio=1.0)


def _leaves(out, transform: str, stage: str) -> dict[str, list[str]]:
    """Source ids per way out of one transform, read from the written shards."""
    derived = [r for r in read_rows(out, "data") if r["transform"] == transform]
    rejected = [r for r in read_rows(out, "rejected") if r["filter_stage"] == stage]
    failed = [r for r in read_rows(out, "failed") if r["stage"].startswith(stage)]
    return {"derived": sorted({r["derived_from"][0] for r in derived}),
            "rejected": sorted(r["id"] for r in rejected),
            "failed": sorted(r["subject_id"] for r in failed)}


def test_every_source_row_leaves_each_transform_once(splitter, tmp_path):
    result = run(_config(tmp_path, splitter.base_url))
    out, manifest = result.output_dir, result.manifest
    assert all(c["holds"] for c in manifest["accounting"]), manifest["accounting"]
    input_ids = set()
    for transform, name in ((REVERSAL, "reversal"), (SIMPLIFICATION, "simplification"),
                            (RECOMBINATION, "recombination")):
        leaves = _leaves(out, transform, STAGES[name])
        every = leaves["derived"] + leaves["rejected"] + leaves["failed"]
        assert len(every) == len(set(every)) == len(ROWS), (name, leaves)
        input_ids = input_ids or set(every)
        assert set(every) == input_ids
    accounting = transform_accounting(manifest["stages"], len(ROWS))
    assert set(accounting) == {"reversal", "simplification", "recombination"}
    assert all(a["holds"] for a in accounting.values()), accounting

    stages = manifest["stages"]
    assert stages["atomic_reversal"]["rejected"] == {
        "empty_output": 1, "lossy_reversal": 1, "output_too_short_to_reverse": 1}
    # 5 multi-part rows reach the splitter; GARBLE is a dead letter with its raw answer,
    # ONEPART is not split, INVENT's answers are not in the response.
    assert stages["atomic_simplification_generate"] == {"in": 5, "ok": 5, "failed": 0}
    assert stages["atomic_simplification_parse"]["failed"] == 1
    assert stages["atomic_simplification"]["rejected"] == {
        "empty_output": 1, "no_usable_subtasks": 1, "not_decomposable": 1,
        "single_part_task": 14}
    assert stages["atomic_simplification_subtasks"]["rejected"] == {"ungrounded_subtask": 2}
    (dead,) = read_rows(out, "failed")
    assert dead["error_class"] == "unparsable_response"
    assert "raw answer: Sure! The sub-tasks are" in dead["message"]

    rows = read_rows(out, "data")
    split = [r for r in rows if r["transform"] == SIMPLIFICATION]
    assert {(r["instruction"], r["output"]) for r in split} >= {
        ("Name a fruit.", "An apple is a good choice here."),
        ("Then explain why it is healthy.", "It is rich in fibre and vitamin C.")}
    assert all(r["prompt_ref"] == "atomic_tasks/simplify@v1" and r["generator"] == "scripted"
               for r in split)
    assert all(r["derived_from"] and r["recipe"] == "atomic_tasks" for r in rows)
    body = splitter.bodies[0]
    assert body["structured_outputs"]["json"]["properties"]["subtasks"]["maxItems"] == 4
    assert body["temperature"] == 0.0


def test_a_failed_request_is_a_dead_letter_and_accounting_holds(tmp_path):
    server = ScriptedSplitter(FaultPlan(p_500=1.0, max_faults=2))
    server.start()
    try:
        result = run(_config(tmp_path, server.base_url, attempts=1,
                             transforms=("simplification",)))
    finally:
        server.stop()
    stages = result.manifest["stages"]
    assert stages["atomic_simplification_generate"] == {"in": 5, "ok": 3, "failed": 2}
    accounting = transform_accounting(stages, len(ROWS))
    assert accounting["simplification"]["failed"] >= 2 and accounting["simplification"]["holds"]
    failed = read_rows(result.output_dir, "failed")
    assert {r["stage"] for r in failed} >= {"atomic_simplification_generate"}


def test_reruns_write_identical_shards(splitter, tmp_path):
    first = run(_config(tmp_path, splitter.base_url, out="a")).output_dir
    second = run(_config(tmp_path, splitter.base_url, out="b")).output_dir
    assert shard_digests(first) == shard_digests(second)


def test_the_transforms_work_in_any_beam_pipeline(splitter):
    gen = _generator(splitter.base_url)
    handler = GeneratorModelHandler(gen, resolve_identity(gen), None)
    with beam.Pipeline(runner="FnApiRunner") as p:
        records = (p | beam.Create(ROWS) | ToInstructionRecords()).records
        reversed_ = records | "Reverse" >> ReverseTasks()
        recombined = records | "Recombine" >> RecombineTasks(RecombinationRule(options=3))
        simplified = records | "Simplify" >> SimplifyTasks(handler, resolve_identity(gen))
        counts = [
            (name, out.derived | f"{name}Rows" >> beam.combiners.Count.Globally(),
             out.rejected | f"{name}Rej" >> beam.combiners.Count.Globally())
            for name, out in (("rev", reversed_), ("rec", recombined), ("sim", simplified))]
        for name, derived, rejected in counts:
            both = ((derived | f"{name}D" >> beam.Map(lambda n: ("d", n)),
                     rejected | f"{name}R" >> beam.Map(lambda n: ("r", n)))
                    | f"{name}Both" >> beam.Flatten())
            expected = {"rev": [("d", 17), ("r", 3)], "rec": [("d", 19), ("r", 1)],
                        "sim": [("d", 4), ("r", 19)]}[name]
            assert_that(both, equal_to(expected), label=f"{name}Check")
        assert_that(simplified.failed | beam.Map(lambda f: f.error_class),
                    equal_to(["unparsable_response"]), label="dead")
