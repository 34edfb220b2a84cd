"""What every recipe stamps on its rows and derives its randomness from.

Request seeds and RNGs come from `derive_seed` over named parts, so a rerun asks the same
questions (and hits the cache); `Provenance` writes the model, revision, prompt, sampling,
seed and request of the answer onto each row; `demo_text` is how an instruction appears in a
prompt; `draw_demos` is how the bootstrap recipes pick a prompt's demos. They began in
Self-Instruct's steps and are used by every recipe.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

from pipelines.generators.backends import GeneratorIdentity
from pipelines.generators.generation import GenerationOutcome
from schemas import InstructionRecord


def derive_seed(*parts: object) -> int:
    """A 31-bit seed from named parts: RNGs and request seeds are fixed per (stage, round, slot)."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode("utf-8")).hexdigest()
    return int(digest[:8], 16) & 0x7FFFFFFF


def demo_text(instruction: str) -> str:
    """How an instruction appears in a prompt (the paper's normalization)."""
    return re.sub(r"\s+", " ", instruction).strip().rstrip(":")


@dataclass(frozen=True)
class Provenance:
    """What every generated row records about how it was made."""

    identity: GeneratorIdentity

    def stamp(self, record: InstructionRecord, outcome: GenerationOutcome) -> InstructionRecord:
        req = outcome.request
        assert outcome.completion is not None
        return replace(
            record,
            generator=self.identity.model,
            generator_revision=self.identity.revision,
            prompt_ref=req.prompt_ref,
            sampling=canonical_sampling(req.sampling),
            seed=req.seed,
            request_id=req.request_id,
            finish_reason=outcome.completion.finish_reason,
        )


def canonical_sampling(sampling: dict) -> str:
    """The sampling a row records: the request's JSON with sorted keys, no spaces."""
    return json.dumps(sampling, sort_keys=True, separators=(",", ":"))


def draw_demos(rng: random.Random, machine: Sequence[str], seed_texts: Sequence[str],
               num_machine_demos: int, num_prompt_instructions: int) -> list[str]:
    """One prompt's demos, as the papers' code draws them: up to `num_machine_demos` machine
    instructions, seeds up to `num_prompt_instructions` in all, then shuffled."""
    demos = rng.sample(machine, min(num_machine_demos, len(machine)))  # no copy of the pool
    demos += rng.sample(list(seed_texts), min(num_prompt_instructions - len(demos),
                                              len(seed_texts)))
    rng.shuffle(demos)
    return demos
