"""Ensemble-Instruct's output ensembling: keep an instance only when its models agree.

Source: Lee et al., Findings of EMNLP 2023, `IBM/ensemble-instruct` `ensemble_output.py`
(reference/seed-algorithms.md §2.6). Each instance has one output from the generator (the model
that wrote the instruction and the instance) and one from each extra model, answering it
zero-shot. On the normalized texts (lower case, ASCII punctuation removed, whitespace
collapsed) and with *stemmed* ROUGE-L (rouge-score semantics, `filters.rouge`):

1. the generator's output equals an extra model's  -> keep the generator's output;
2. the extra models agree with each other           -> keep the agreed output (or, with the
   code's original rule that produced the shipped sample file, the generator's output);
3. otherwise every candidate gets the sum of its ROUGE-L to the other candidates; the best sum
   wins (ties: the generator, then model order), and the instance is dropped when the minimum
   pairwise ROUGE-L is <= 0.01 (any pair with essentially no overlap) or the winner is empty.

The paper has three candidates. For N candidates the same steps apply with "an extra model"
meaning any one of them, "the extra models agree" meaning the largest group of extra models
with exactly equal normalized outputs (at least two; ties: the group whose first member comes
first), and the sums and minimum taken over all pairs. With N = 3 every step is the paper's,
down to the floating-point operations (sums add pair scores in index order); a property test
checks this against a literal transcription of the paper's function.

Pure: no Beam, no I/O. Pairwise scores are always computed (the paper computes them before its
exact-match shortcuts too) so every record can show why it was kept or dropped.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from itertools import combinations
from typing import Literal

from filters.rouge import rouge_l
from filters.verdict import Verdict
from schemas.reasons import Reason

__all__ = [
    "AgreeRule",
    "Consensus",
    "ConsensusPath",
    "PAPER_MIN_PAIRWISE_ROUGE",
    "ECHO_MIN_WORDS",
    "consensus",
    "echo_verdict",
    "normalize_answer",
]

AgreeRule = Literal["agreed_output", "generator_output"]
"""What step 2 keeps. ``agreed_output``: the extra models' agreed output (the repository's
code since commit c65b4c5, and what the paper describes; our default). ``generator_output``:
the generator's output (the code before that commit; the shipped `sample/openei.ensemble`)."""

PAPER_MIN_PAIRWISE_ROUGE = 0.01

_PUNCT_TABLE = str.maketrans("", "", string.punctuation)


class ConsensusPath(StrEnum):
    """Which step decided; kept paths are counted per path, the rejection is a reason code."""

    EXACT_MATCH = "exact_match"  # generator output == an extra output (normalized)
    AGREED_OTHERS = "agreed_others"  # extra outputs agree with each other
    ROUGE_SELECTED = "rouge_selected"  # highest summed ROUGE-L, minimum pairwise > threshold
    DISAGREEMENT = "disagreement"  # rejected: minimum pairwise <= threshold or empty winner


def normalize_answer(text: str) -> str:
    """The paper's `normalize_answer`: lower, drop ASCII punctuation, collapse whitespace."""
    return " ".join(text.lower().translate(_PUNCT_TABLE).split())


@dataclass(frozen=True, slots=True)
class Consensus:
    """The decision for one instance and everything it was based on.

    Index 0 is the generator's output, 1.. the extra models' in configuration order.
    ``pairwise`` holds (i, j, stemmed ROUGE-L of the normalized texts) for every i < j;
    ``sums[i]`` is candidate i's summed ROUGE-L to the others and ``best`` its argmax.
    """

    path: ConsensusPath
    selected: int | None  # index of the kept output; None when rejected
    outputs: tuple[str, ...]  # every candidate, stripped as the paper reads them
    normalized: tuple[str, ...]
    pairwise: tuple[tuple[int, int, float], ...]
    sums: tuple[float, ...]
    best: int
    min_pairwise: float
    threshold: float

    @property
    def keep(self) -> bool:
        return self.selected is not None

    @property
    def output(self) -> str | None:
        return None if self.selected is None else self.outputs[self.selected]

    def verdict(self) -> Verdict:
        """Kept: the path is the detail and the minimum pairwise score the score."""
        if self.keep:
            return Verdict(True, None, self.min_pairwise, self.path.value)
        if self.min_pairwise > self.threshold:
            detail = "the best-scoring output is empty"
        else:
            detail = f"min pairwise ROUGE-L {self.min_pairwise:.4f} <= {self.threshold}"
        return Verdict.drop(Reason.ENSEMBLE_DISAGREEMENT, detail, self.min_pairwise)


def _agreed_group(normalized: Sequence[str]) -> list[int]:
    """The largest group (>= 2) of extra models with equal normalized outputs, or []."""
    groups: dict[str, list[int]] = {}
    for i in range(1, len(normalized)):
        groups.setdefault(normalized[i], []).append(i)
    best: list[int] = []
    for members in groups.values():  # insertion order = order of each group's first member
        if len(members) >= 2 and len(members) > len(best):
            best = members
    return best


def consensus(outputs: Sequence[str], *, agree_rule: AgreeRule = "agreed_output",
              min_pairwise_rouge: float = PAPER_MIN_PAIRWISE_ROUGE) -> Consensus:
    """Decide one instance from ``outputs`` (generator first, then each extra model)."""
    if len(outputs) < 2:
        raise ValueError(f"consensus needs the generator's and >= 1 other output, "
                         f"got {len(outputs)}")
    if agree_rule not in ("agreed_output", "generator_output"):
        raise ValueError(f"unknown agree_rule {agree_rule!r}")
    raw = tuple(o.strip() for o in outputs)
    norm = tuple(normalize_answer(o) for o in raw)
    n = len(raw)
    score: dict[tuple[int, int], float] = {
        (i, j): rouge_l(norm[i], norm[j], stem=True) for i, j in combinations(range(n), 2)}
    pairwise = tuple((i, j, s) for (i, j), s in score.items())
    # Candidate i's sum, adding its pair scores in index order (the paper: r01 + r02,
    # r01 + r12, r02 + r12), so N = 3 gives the paper's floats exactly.
    sums = tuple(sum(score[min(i, j), max(i, j)] for j in range(n) if j != i) for i in range(n))
    best = max(range(n), key=lambda i: (sums[i], -i))  # ties: the lowest index
    worst = min(score.values())

    def decided(path: ConsensusPath, selected: int | None) -> Consensus:
        return Consensus(path, selected, raw, norm, pairwise, sums, best, worst,
                         min_pairwise_rouge)

    if any(norm[0] == norm[j] for j in range(1, n)):
        return decided(ConsensusPath.EXACT_MATCH, 0)
    group = _agreed_group(norm)
    if group:
        return decided(ConsensusPath.AGREED_OTHERS,
                       group[0] if agree_rule == "agreed_output" else 0)
    if worst > min_pairwise_rouge and raw[best] != "":
        return decided(ConsensusPath.ROUGE_SELECTED, best)
    return decided(ConsensusPath.DISAGREEMENT, None)


ECHO_MIN_WORDS = 3
"""An output that is a piece of its instruction counts as an echo only from this many words:
a one- or two-word label ("True", "Positive") often stands in the question that offers it."""


def echo_verdict(instruction: str, input_text: str, output: str) -> Verdict:
    """Not in the paper: an ensembled output that repeats its input, or a piece of its
    instruction of at least ECHO_MIN_WORDS words, is no answer, however well the models agree
    on it (small models agree most on copying). Compared normalized, as the consensus is."""
    out = normalize_answer(output)
    if out and out == normalize_answer(input_text):
        return Verdict.drop(Reason.INPUT_EQUALS_OUTPUT, "the output repeats the input", 1.0)
    if len(out.split()) >= ECHO_MIN_WORDS and out in normalize_answer(instruction):
        return Verdict.drop(Reason.OUTPUT_ECHOES_INSTRUCTION,
                            "the output is a piece of the instruction", 1.0)
    return Verdict.ok()
