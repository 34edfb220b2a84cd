"""EcomGPT-style rule filters (whitespace, empty, overlong, illegal words) as a Beam transform.

The rules themselves are pure (`filters.rules`); this shell maps them over records and routes
the verdicts, so the counters and the rejected rows look like every other stage's.

Use from any Beam pipeline::

    from filters.rules import RuleConfig
    from pipelines.transforms.rules import RuleFilter

    routed = records | "Rules" >> RuleFilter(RuleConfig(illegal_words=("as an ai",)))
    routed.kept       # InstructionRecord, whitespace-normalized (code and indentation kept)
    routed.rejected   # RejectedRecord: empty_instruction / empty_output /
                      # overlong_instance (score = chars) / illegal_word (detail = the word)

Counters ``normalized/<field>`` say how many records normalization changed per text field.
"""

from __future__ import annotations

from collections.abc import Iterator

import apache_beam as beam

from filters.rules import RuleConfig, changed_fields, judge
from filters.verdict import Verdict
from pipelines.transforms.route import Routed, RouteVerdicts, count
from schemas import InstructionRecord

FILTER_NAME = "rules"


class _JudgeFn(beam.DoFn):
    """Normalize and check one record; count each text field the normalization changed."""

    def __init__(self, cfg: RuleConfig, stage: str) -> None:
        self._cfg = cfg
        self._stage = stage

    def process(self, record: InstructionRecord
                ) -> Iterator[tuple[InstructionRecord, Verdict]]:
        judged, verdict = judge(record, self._cfg)
        for name in changed_fields(record, judged):
            count(self._stage, f"normalized/{name}")
        yield judged, verdict


class RuleFilter(beam.PTransform):
    """PCollection[InstructionRecord] -> ``Routed(kept, rejected)`` by the rule filters.

    Kept records are the normalized ones when ``cfg.normalize`` is set. Counters go to
    ``instructbeam/stage/<stage>``, with ``normalized/<field>`` per changed text field (over
    every record judged, kept or rejected).
    """

    def __init__(self, cfg: RuleConfig | None = None, *, stage: str = "rules") -> None:
        super().__init__()
        self._cfg = cfg or RuleConfig()
        self._stage = stage

    def expand(self, records: beam.PCollection) -> Routed:
        return (records
                | "Judge" >> beam.ParDo(_JudgeFn(self._cfg, self._stage))
                | "Route" >> RouteVerdicts(self._stage, FILTER_NAME))
