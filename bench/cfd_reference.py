"""Cf-D as Algorithm 1 is written (#InsTag, §4.1): the reference our fast selection must equal.

Line by line: stable sort by tag count descending; repeat passes with T_B reset to ∅; take q
iff |T_B ∪ T_q| > |T_B| (tested as "T_q is not a subset of T_B", the same condition without
building the union); remove q from the list (one list removal per pick); stop at N. The
paper's loop never ends when only tag-less queries remain; this one stops after a pass that
takes nothing. It also avoids the Python pitfall of removing from a list while iterating
over it (which would skip the query after each pick): the index stays put after a removal.
"""

from __future__ import annotations

from collections.abc import Collection, Hashable, Sequence


def cfd_literal(tag_sets: Sequence[Collection[Hashable]], n: int) -> list[tuple[int, int]]:
    """(input index, 1-based pass) of each selected query, in selection order."""
    pool = sorted(range(len(tag_sets)), key=lambda i: -len(set(tag_sets[i])))
    remaining = [(i, set(tag_sets[i])) for i in pool]
    selected: list[tuple[int, int]] = []
    pass_no = 0
    while len(selected) < n:
        pass_no += 1
        seen: set[Hashable] = set()
        taken_before = len(selected)
        i = 0
        while i < len(remaining):
            q, tags = remaining[i]
            if not tags <= seen:  # |T_B ∪ T_q| > |T_B|
                selected.append((q, pass_no))
                seen |= tags
                remaining.pop(i)  # D.remove(q)
            else:
                i += 1
            if len(selected) == n:
                break
        if len(selected) == taken_before:  # only tag-less queries are left
            break
    return selected
