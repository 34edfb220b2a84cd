"""What the human verdicts say about a run: estimated precision per source and per stage.

Precision = good / (good + bad) over the reviewed audit rows (skips say nothing either way).
A sample of 20 rows per source is small, so every estimate comes with a 95% Wilson score
interval, which, unlike the normal approximation, stays inside [0, 1] and is not zero-width
at 0/n or n/n.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Final

from pipelines.outputs.review import ReviewVerdict, SampleRow

Z_95: Final = 1.959963984540054  # the standard normal's 97.5% quantile


def wilson_interval(successes: int, trials: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval for a binomial proportion; (0, 1) when there are no trials."""
    if not 0 <= successes <= trials:
        raise ValueError(f"need 0 <= successes <= trials, got {successes} of {trials}")
    if trials == 0:
        return 0.0, 1.0
    p = successes / trials
    z2 = z * z
    centre = (p + z2 / (2 * trials)) / (1 + z2 / trials)
    half = z / (1 + z2 / trials) * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials))
    # at p = 0 or 1 one bound is exact; do not let rounding move it off 0 or 1
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == trials else min(1.0, centre + half)
    return low, high


@dataclasses.dataclass(frozen=True, slots=True)
class Tally:
    """Verdict counts of one group (a source or a stage)."""

    name: str
    good: int = 0
    bad: int = 0
    skip: int = 0

    @property
    def judged(self) -> int:
        return self.good + self.bad

    @property
    def precision(self) -> float | None:
        return self.good / self.judged if self.judged else None

    @property
    def interval(self) -> tuple[float, float] | None:
        return wilson_interval(self.good, self.judged) if self.judged else None


def tally(verdicts: Iterable[ReviewVerdict], key: str) -> list[Tally]:
    """Counts per value of `key` ("source" or "stage"), in name order."""
    counts: dict[str, dict[str, int]] = {}
    for v in verdicts:
        group = counts.setdefault(getattr(v, key), {"good": 0, "bad": 0, "skip": 0})
        group[v.verdict] += 1
    return [Tally(name, **c) for name, c in sorted(counts.items())]


def format_review(sample: Sequence[SampleRow], verdicts: Mapping[str, ReviewVerdict],
                  where: str) -> list[str]:
    """The review section of `instructbeam inspect`: progress, then precision tables."""
    reviewed = sum(1 for row in sample if row.id in verdicts)
    lines = ["", f"  human review ({where}): {reviewed} of {len(sample)} audit rows reviewed, "
                 f"{len(sample) - reviewed} unreviewed"]
    if not verdicts:
        return lines
    lines.append("    precision = good / (good + bad), with a 95% Wilson interval")
    in_force = list(verdicts.values())
    by = {key: tally(in_force, key) for key in ("source", "stage")}
    width = max(len("by source") + 2, *(len(t.name) + 2 for g in by.values() for t in g))
    for key, groups in by.items():
        lines.append(f"    {'by ' + key:<{width}}{'good':>6}{'bad':>6}{'skip':>6}"
                     f"{'precision':>11}  95% interval")
        for t in groups:
            shown = (f"{t.precision:>11.3f}  [{t.interval[0]:.3f}, {t.interval[1]:.3f}]"
                     if t.precision is not None and t.interval else f"{'-':>11}")
            lines.append(f"    {t.name:<{width}}{t.good:>6}{t.bad:>6}{t.skip:>6}{shown}")
    return lines
