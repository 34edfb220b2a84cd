"""The shared Beam shell: routing with a payload, and the one-place gather."""

from __future__ import annotations

import apache_beam as beam
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from filters.verdict import Verdict
from pipelines.transforms.route import ONE_KEY, RouteVerdicts, gather_all
from schemas import InstructionRecord, Reason, content_hash


def _record(rid: str) -> InstructionRecord:
    return InstructionRecord(id=rid, content_hash=content_hash(rid), recipe="explore_instruct",
                             stage="explore_extend", round=1, instruction=rid)


def test_route_with_payload_passes_the_payload_on_and_rejects_the_record():
    kept, dropped = _record("kept"), _record("dropped")
    drop = Verdict.drop(Reason.NEAR_DUPLICATE, "x")
    with TestPipeline() as p:
        routed = (p | beam.Create([(kept, Verdict.ok(), "payload-1"),
                                   (dropped, drop, "payload-2")])
                  | "Check" >> RouteVerdicts("explore_extend", "extend_parse", payload=True))
        assert_that(routed.kept, equal_to(["payload-1"]), label="Kept")
        assert_that(routed.rejected | beam.Map(lambda r: (r.record.id, r.filter_name, r.reason)),
                    equal_to([("dropped", "extend_parse", Reason.NEAR_DUPLICATE.value)]),
                    label="Rejected")
    labels = {t.full_label for t in p.transforms_stack[0].parts[1].parts}
    # the DoFn's class name is part of the Dataflow step name Explore's jobs already have
    assert "Check/ParDo(_RoutePayloadFn)" in labels, labels


def test_gather_all_puts_everything_under_one_key_with_plain_labels():
    with TestPipeline() as p:
        items = p | beam.Create([3, 1, 2])
        gathered = gather_all(items, "Sample", entry=lambda x: x * 10)
        assert_that(gathered | beam.Map(lambda kv: (kv[0], sorted(kv[1]))),
                    equal_to([(ONE_KEY, [10, 20, 30])]))
    top = {t.full_label for t in p.transforms_stack[0].parts}
    assert {"Sample/One", "Sample/Gather"} <= top, top
