"""EcomGPT-style rule filters (whitespace, empty, overlong, illegal words) as a Beam transform.

The rules themselves are pure (`filters.rules`); this shell maps them over records and routes
the verdicts, so the counters and the rejected rows look like every other stage's.

Use from any Beam pipeline::

    from filters.rules import RuleConfig
    from pipelines.rules import RuleFilter

    routed = records | "Rules" >> RuleFilter(RuleConfig(illegal_words=("as an ai",)))
    routed.kept       # InstructionRecord, whitespace-normalized
    routed.rejected   # RejectedRecord: empty_instruction / empty_output /
                      # overlong_instance (score = chars) / illegal_word (detail = the word)
"""

from __future__ import annotations

import apache_beam as beam

from filters.rules import RuleConfig, judge
from pipelines.transforms import Routed, RouteVerdicts

FILTER_NAME = "rules"


class RuleFilter(beam.PTransform):
    """PCollection[InstructionRecord] -> ``Routed(kept, rejected)`` by the rule filters.

    Kept records are the normalized ones when ``cfg.normalize`` is set. Counters go to
    ``instructbeam/stage/<stage>``.
    """

    def __init__(self, cfg: RuleConfig | None = None, *, stage: str = "rules") -> None:
        super().__init__()
        self._cfg = cfg or RuleConfig()
        self._stage = stage

    def expand(self, records: beam.PCollection) -> Routed:
        return (records
                | "Judge" >> beam.Map(judge, cfg=self._cfg)
                | "Route" >> RouteVerdicts(self._stage, FILTER_NAME))
