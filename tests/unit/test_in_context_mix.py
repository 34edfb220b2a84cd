"""Which instructions an instruction prompt shows: the papers' seed/machine mix and draw order.

Self-Instruct (`bootstrap_instructions.py`): `random.sample(machine, min(2, len(machine)))`, then
`random.sample(seeds, 8 - len(demos))`, then `random.shuffle`: 8 seeds at the start, 6 seed + 2
machine once 2 machine instructions exist. Ensemble-Instruct draws the same way with 24 demos
(20 seed + 4 machine) for type A and, in the paper, 10 (8 seed + 2 machine) for type B.
"""

from __future__ import annotations

import random
import re

import pytest

from pipelines.config import RunConfig
from pipelines.recipes.ensemble_instruct import steps as ens
from pipelines.recipes.ensemble_instruct.config import (
    EnsembleInstructConfig,
    EnsembleOutputOnlyTasksConfig,
    ExtraGeneratorConfig,
)
from pipelines.recipes.self_instruct import steps as si_steps
from pipelines.recipes.self_instruct.config import SelfInstructConfig
from pipelines.recipes.self_instruct.seeds import SeedTask
from pipelines.transforms.provenance import derive_seed
from schemas import InstructionRecord

SEEDS_A = [SeedTask(f"a{k}", f"Seed with input number {k} here.", (("some input", "out"),),
                    False) for k in range(30)]
SEEDS_B = [SeedTask(f"b{k}", f"Seed without input number {k} here.", (("", "out"),), False)
           for k in range(12)]


def _machine(n: int, prefix: str = "Machine") -> list[InstructionRecord]:
    return [InstructionRecord(id=f"m{k:03d}", content_hash=f"h{k}", recipe="r",
                              stage="instruction_gen", round=1 + k // 3,
                              instruction=f"{prefix} instruction number {k} here.")
            for k in range(n)]


def _si_requests(machine: list[InstructionRecord], seeds: list[SeedTask], cfg: RunConfig,
                 n: int = 5) -> list:
    """Prompts 0..n-1 of lane 0, each seeing the whole `machine` pool (decision order)."""
    texts = [r.instruction for r in machine]
    seed_texts = [s.instruction for s in seeds]
    return [si_steps.instruction_request(0, i, texts, seed_texts, cfg) for i in range(n)]


def _ens_requests(machine: list[InstructionRecord], seeds: list[SeedTask], kind: str,
                  cfg: RunConfig, n: int = 5) -> list:
    texts = [r.instruction for r in machine]
    seed_texts = [s.instruction for s in ens.seeds_of_type(seeds, kind)]
    return [ens.instruction_request(0, i, texts, seed_texts, kind, cfg) for i in range(n)]


def _listed(prompt: str) -> list[str]:
    """The demo instructions of a numbered-list prompt, in order (end marker removed)."""
    return [x.removesuffix(" |EoS|") for x in re.findall(r"^\d+\. (.+)$", prompt, flags=re.M)]


def _si_config(**si: object) -> RunConfig:
    return RunConfig(recipe="self_instruct", output_dir="out",
                     self_instruct=SelfInstructConfig(**si))  # type: ignore[arg-type]


@pytest.mark.parametrize(("n_machine", "expected"), [(0, (8, 0)), (1, (7, 1)), (2, (6, 2)),
                                                     (9, (6, 2))])
def test_self_instruct_shows_6_seed_and_2_machine_once_2_exist(n_machine, expected) -> None:
    cfg = _si_config(num_instructions=1000)
    requests = _si_requests(_machine(n_machine), SEEDS_A, cfg)
    for req in requests:
        demos = _listed(req.prompt)
        n_seed = sum(d.startswith("Seed") for d in demos)
        assert (n_seed, len(demos) - n_seed) == expected
        assert len(set(demos)) == len(demos)
        assert req.prompt.endswith("\n9.")


def test_self_instruct_draws_like_the_paper() -> None:
    """Machine sample first, then seeds, then one shuffle, from one RNG per (lane, prompt)."""
    cfg = _si_config(num_instructions=1000)
    machine = _machine(7)
    requests = _si_requests(machine, SEEDS_A, cfg)
    seed_texts = [s.instruction for s in SEEDS_A]
    machine_texts = [r.instruction for r in machine]  # pool order: decision order
    for index, req in enumerate(requests):
        rng = random.Random(derive_seed(cfg.seed, si_steps.STAGE_INSTRUCTIONS, "lane", 0,
                                        index))
        demos = rng.sample(machine_texts, 2)
        demos += rng.sample(seed_texts, 6)
        rng.shuffle(demos)
        assert _listed(req.prompt) == demos
    assert len({tuple(_listed(r.prompt)) for r in requests}) == len(requests)


def test_self_instruct_mix_follows_a_non_default_demo_count() -> None:
    cfg = _si_config(num_instructions=1000, num_prompt_instructions=4, num_machine_demos=1)
    for req in _si_requests(_machine(5), SEEDS_A, cfg):
        demos = _listed(req.prompt)
        assert [d.startswith("Machine") for d in demos].count(True) == 1
        assert len(demos) == 4 and req.prompt.endswith("\n5.")


def _ens_config(**type_b: object) -> RunConfig:
    extras = (ExtraGeneratorConfig("x1"), ExtraGeneratorConfig("x2"))
    ei = EnsembleInstructConfig(
        type_b=EnsembleOutputOnlyTasksConfig(**type_b),  # type: ignore[arg-type]
        extra_generators=extras)
    return RunConfig(recipe="ensemble_instruct", output_dir="out", ensemble_instruct=ei)


@pytest.mark.parametrize(
    ("kind", "type_b", "n_machine", "expected"),
    [
        (ens.TYPE_A, {}, 0, (24, 0)),
        (ens.TYPE_A, {}, 3, (21, 3)),
        (ens.TYPE_A, {}, 10, (20, 4)),  # paper and code: 20 seed + 4 machine
        (ens.TYPE_B, {}, 1, (9, 1)),
        (ens.TYPE_B, {}, 10, (8, 2)),  # the paper's 8 + 2 (our default)
        (ens.TYPE_B, {"num_machine_demos": 4}, 10, (6, 4)),  # the released code's 6 + 4
    ],
)
def test_ensemble_instruct_mix(kind, type_b, n_machine, expected) -> None:
    cfg = _ens_config(**type_b)
    seeds = SEEDS_A + SEEDS_B
    requests = _ens_requests(_machine(n_machine), seeds, kind, cfg)
    type_seeds = {s.instruction for s in ens.seeds_of_type(seeds, kind)}
    for req in requests:
        demos = _listed(req.prompt)
        n_seed = sum(d in type_seeds for d in demos)
        n_machine_shown = sum(d.startswith("Machine") for d in demos)
        assert (n_seed, n_machine_shown) == expected
        assert len(demos) == sum(expected) and len(set(demos)) == len(demos)


def test_ensemble_instruct_draws_like_its_code() -> None:
    cfg = _ens_config()
    machine = _machine(9)
    seeds = SEEDS_A + SEEDS_B
    requests = _ens_requests(machine, seeds, ens.TYPE_B, cfg)
    seed_texts = [s.instruction for s in SEEDS_B]
    for index, req in enumerate(requests):
        rng = random.Random(derive_seed(cfg.seed, ens.STAGE_INSTRUCTIONS, ens.TYPE_B,
                                        "lane", 0, index))
        demos = rng.sample([r.instruction for r in machine], 2)
        demos += rng.sample(seed_texts, 8)
        rng.shuffle(demos)
        assert _listed(req.prompt) == demos
