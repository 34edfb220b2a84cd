"""Ensemble-Instruct's instruction side: response parsing, the ``|EoS|`` quirk, similarity report.

Source: `IBM/ensemble-instruct` `gen_instructions.py` (reference/seed-algorithms.md §2.2).

* The prompt lists demos as ``k. <instruction> |EoS|`` and generation stops at ``|EoS|``.
  The response is split like Self-Instruct's (``\\n<number>. ``) and every piece gets the
  Self-Instruct filters 4-9 in their order, with two differences from Self-Instruct: no
  ``capitalize()`` and no whole-response drop on ``finish_reason=length``; the "Write a
  program" prefix is tested on the raw text.
* The paper's serving API returned the stop string, so every stored machine instruction ends
  with ``" |EoS|"`` (some with two, when ``min_new_tokens`` let the model write one before the
  stop): the word-count filter counts it, the novelty pool holds it (the token ``eos``), later
  prompts show ``X |EoS| |EoS|`` and the instance prompt carries it. ``eos_suffix=True``
  reproduces that: the caller asks the server to return the stop string too and each piece is
  kept as generated (whitespace collapsed); the recorded ``avg_similarity_score`` and
  ``most_similar`` of all 203 released instructions are reproduced exactly only this way.
  ``False`` (our default) cuts each piece at its first ``|EoS|`` and works on clean text. The
  instance parser removes the markers from the instruction, as the paper's final samples do.
* ``similarity_report`` recomputes what the code stored per accepted instruction: the mean
  ROUGE-L (no stemmer) against the pool and the 10 most similar pool texts, ordered as
  ``np.argsort(scores)[-10:][::-1]`` ordered them with NumPy's classic introsort (the released
  run's NumPy). NumPy >= 2 on AVX-512 machines sorts with SIMD code whose tie order differs, so
  that sort is ported here (``legacy_argsort``) to give the same order on every machine.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from filters.rouge import rouge_l
from filters.self_instruct import (
    InstructionRules,
    ParsedInstruction,
    check_instruction,
    normalize_instruction,
    split_numbered_list,
)
from filters.verdict import Verdict
from schemas.reasons import Reason

__all__ = [
    "EOS_SUFFIX",
    "legacy_argsort",
    "paper_rules",
    "parse_instruction_response",
    "similarity_report",
]

EOS_SUFFIX = " |EoS|"
_EOS = "|EoS|"


def paper_rules(min_words: int = 4, max_words: int = 150) -> InstructionRules:
    """Self-Instruct's filters as Ensemble-Instruct's code applies them."""
    return InstructionRules(min_words=min_words, max_words=max_words, capitalize="none",
                            prefix_case_sensitive=True)


def parse_instruction_response(completion: str, rules: InstructionRules, *,
                               eos_suffix: bool = False) -> list[ParsedInstruction]:
    """Split one response into instructions, each with its filter verdict.

    ``eos_suffix=False``: a piece is cut at its first ``|EoS|`` (the marker ends an
    instruction). ``True``: pieces are kept whole, markers included (the completion must then
    include the stop string, as the paper's API returned it). Whitespace is collapsed; pieces
    empty after that are skipped, as the code skips empty pieces.
    """
    pieces = []
    for piece in split_numbered_list(completion):
        if not eos_suffix:
            piece = piece.split(_EOS, 1)[0]
        text = normalize_instruction(piece, "none")  # whitespace collapsed, case kept
        if text:
            pieces.append(text)
    if not pieces:
        return [ParsedInstruction(0, completion.strip(), Verdict.drop(Reason.EMPTY_RESPONSE))]
    return [ParsedInstruction(i, p, check_instruction(p, rules)) for i, p in enumerate(pieces)]


def similarity_report(text: str, pool: Sequence[str], top: int = 10
                      ) -> tuple[float, dict[str, float]]:
    """(mean ROUGE-L to the pool, {pool text: score} of the ``top`` most similar), as stored.

    Equal pool texts collapse into one key (a dict, as in the code); the dict's order is the
    code's order.
    """
    scores = [rouge_l(text, other) for other in pool]
    order = legacy_argsort(scores)
    most = {pool[i]: scores[i] for i in order[-top:][::-1]}
    return float(np.mean(scores)), most


# --- NumPy 1.x argsort (quicksort kind): introsort, median of three, insertion sort <= 16 ----

_SMALL_QUICKSORT = 15


def legacy_argsort(values: Sequence[float]) -> list[int]:
    """``np.argsort(values)`` exactly as NumPy's generic C introsort orders it (ties included).

    A line-by-line port of ``aquicksort_`` / ``aheapsort_`` from ``npysort/quicksort.cpp``.
    """
    v = list(values)
    tosort = list(range(len(v)))
    num = len(v)
    if num < 2:
        return tosort
    stack: list[tuple[int, int, int]] = []
    pl, pr = 0, num - 1
    cdepth = (num.bit_length() - 1) * 2
    while True:
        if cdepth < 0:
            _aheapsort(v, tosort, pl, pr - pl + 1)
        else:
            while pr - pl > _SMALL_QUICKSORT:
                pm = pl + ((pr - pl) >> 1)
                if v[tosort[pm]] < v[tosort[pl]]:
                    tosort[pm], tosort[pl] = tosort[pl], tosort[pm]
                if v[tosort[pr]] < v[tosort[pm]]:
                    tosort[pr], tosort[pm] = tosort[pm], tosort[pr]
                if v[tosort[pm]] < v[tosort[pl]]:
                    tosort[pm], tosort[pl] = tosort[pl], tosort[pm]
                vp = v[tosort[pm]]
                pi, pj = pl, pr - 1
                tosort[pm], tosort[pj] = tosort[pj], tosort[pm]
                while True:
                    pi += 1
                    while v[tosort[pi]] < vp:
                        pi += 1
                    pj -= 1
                    while vp < v[tosort[pj]]:
                        pj -= 1
                    if pi >= pj:
                        break
                    tosort[pi], tosort[pj] = tosort[pj], tosort[pi]
                pk = pr - 1
                tosort[pi], tosort[pk] = tosort[pk], tosort[pi]
                cdepth -= 1
                if pi - pl < pr - pi:  # push the larger partition, loop on the smaller
                    stack.append((pi + 1, pr, cdepth))
                    pr = pi - 1
                else:
                    stack.append((pl, pi - 1, cdepth))
                    pl = pi + 1
            for pi in range(pl + 1, pr + 1):  # insertion sort
                vi = tosort[pi]
                vp = v[vi]
                pj = pi
                while pj > pl and vp < v[tosort[pj - 1]]:
                    tosort[pj] = tosort[pj - 1]
                    pj -= 1
                tosort[pj] = vi
        if not stack:
            return tosort
        pl, pr, cdepth = stack.pop()


def _aheapsort(v: list[float], tosort: list[int], start: int, n: int) -> None:
    """NumPy's ``aheapsort_`` on ``tosort[start:start + n]`` (1-based heap indexing)."""

    def a(k: int) -> int:
        return tosort[start + k - 1]

    def put(k: int, value: int) -> None:
        tosort[start + k - 1] = value

    def sift(i: int, tmp: int, size: int) -> None:
        j = i << 1
        while j <= size:
            if j < size and v[a(j)] < v[a(j + 1)]:
                j += 1
            if v[tmp] < v[a(j)]:
                put(i, a(j))
                i = j
                j += j
            else:
                break
        put(i, tmp)

    for root in range(n >> 1, 0, -1):
        sift(root, a(root), n)
    while n > 1:
        tmp = a(n)
        put(n, a(1))
        n -= 1
        sift(1, tmp, n)
