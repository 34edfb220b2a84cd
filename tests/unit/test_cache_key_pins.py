"""Cache keys, record ids, request ids and seeds, pinned to literal values.

A cached answer is found only by its key, and row ids are how runs, exports and reviews refer
to rows; a refactoring that changes either silently throws away every cache and breaks
every earlier output's references. The values below were computed by the code before the
package layout changed (issue 14) and must never change without a migration.
"""

from __future__ import annotations

import dataclasses

from pipelines.config import RunConfig
from pipelines.generators.cache import cache_key
from pipelines.generators.generation import GenerationRequest
from pipelines.recipes.self_instruct.seeds import SeedTask
from pipelines.recipes.self_instruct.steps import (
    clf_request,
    instance_request,
    instruction_request,
    seed_record,
)
from pipelines.transforms.provenance import derive_seed
from schemas.records import stable_id

MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct"
REQUEST = GenerationRequest(
    request_id="r1", stage="instruction_gen", round=0, subject_id="s",
    prompt="Come up with a task:\n1.", prompt_ref="self_instruct/instruction_gen@1",
    sampling={"max_tokens": 16, "temperature": 0.7, "top_p": 0.5, "stop": ["\n\n"]}, seed=7)


def test_cache_key_of_a_fixed_request():
    assert cache_key(MODEL, "rev1", REQUEST) == \
        "4bef9e0319d78f1c0a6139239f5a1a03094861f2184b2e778bb44291ba11d174"
    chat = dataclasses.replace(REQUEST, api="chat",
                               extra_body={"structured_outputs": {"json": {"type": "object"}}})
    assert cache_key("m", "r", chat) == \
        "d83756ee4b1afd8edcef866fb7965667fdfbd4c787c1aedbf1fce9b37d3ff187"


def test_ids_and_seeds():
    assert stable_id("self_instruct", "instance_gen", 3, 1, 0, "Write a haiku.") == \
        "1726378ad70e4b86b188770c"
    assert derive_seed("self_instruct", "instruction_gen", 2, 5) == 1856040420


def test_a_recipe_builds_the_same_requests():
    """Record id, request ids, seeds, sampling and prompts as Self-Instruct's steps make them:
    the cache keys cover all of it."""
    cfg = RunConfig(recipe="self_instruct", output_dir="x")
    record = seed_record(SeedTask("seed_task_0", "Write a haiku about autumn.",
                                  (("", "Leaves fall."),), False))
    assert record.id == "11c6a20e29204b8a0fb30f59"
    instances = instance_request(record, cfg)
    assert (instances.request_id, instances.seed) == ("b796d0a9d2326f628149c86d", 1072752231)
    assert cache_key(MODEL, "rev1", instances) == \
        "ff5e7f9f0bd364b6cb29d8e1674c066736798efdcb3f48fe72a3dbdb974c77b8"
    clf = clf_request(record, cfg)
    assert (clf.request_id, clf.seed) == ("4a09f2ab8cc715962375227a", 392578178)
    assert cache_key(MODEL, "rev1", clf) == \
        "d812fcf313054ef49a06ccf03abc82183092f0faf5afcaec89ba7b59d6ba22c2"

PINNED_BOOTSTRAP = ("fa2bb9781ac29eb9c71b8df7", 1330788021, 1,
                    "00a8db46eced5c31f2e199e22e7f988c9cfb9123ba89f1328609515658cf9a47")


def test_a_bootstrap_prompt_is_pinned_by_lane_and_position():
    """Instruction prompts are keyed by (lane, prompt index) since the streaming bootstrap
    (issue 15; before, by round and slot: those cache entries were deliberately left behind).
    Pinned so the scheme does not drift again."""
    cfg = RunConfig(recipe="self_instruct", output_dir="x")
    seeds = [f"Seed task number {k} asks for something." for k in range(10)]
    request = instruction_request(1, 3, ["A machine instruction about tides."], seeds, cfg)
    assert (request.request_id, request.seed, request.round) == PINNED_BOOTSTRAP[:3]
    assert cache_key(MODEL, "rev1", request) == PINNED_BOOTSTRAP[3]
