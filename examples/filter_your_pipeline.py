"""instructbeam's filters inside a Beam pipeline that knows nothing else about instructbeam.

Reads JSON Lines rows ({"instruction", "input", "output", "n"}), turns them into records,
and chains the three reusable filters; writes the kept rows as Parquet and every rejected
row, with its reason and deciding score, as JSON Lines::

    python examples/filter_your_pipeline.py rows.jsonl out/my_filtered --runner=FnApiRunner

Outputs: ``<prefix>-kept-*.parquet`` (instructbeam's record schema), ``<prefix>-rejected-*.jsonl``
and ``<prefix>-failed-*.jsonl`` (rows that were not records, e.g. a missing field).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions

if __package__ in (None, ""):  # run as a script from a checkout: make the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from filters.near_dup import MinHashParams  # noqa: E402
from filters.rules import RuleConfig  # noqa: E402
from pipelines.transforms.dataset_input import ToInstructionRecords, input_order  # noqa: E402
from pipelines.transforms.near_dup import NearDuplicateFilter  # noqa: E402
from pipelines.transforms.novelty import NoveltyFilter  # noqa: E402
from pipelines.transforms.rules import RuleFilter  # noqa: E402
from schemas import RECORD_SCHEMA, to_row  # noqa: E402


def build(p: beam.Pipeline, rows_path: str, out_prefix: str,
          pool: Sequence[str] = ()) -> None:
    rows = p | "Read" >> beam.io.ReadFromText(rows_path) | "Parse" >> beam.Map(json.loads)
    converted = rows | "ToRecords" >> ToInstructionRecords(order_by="n")
    cleaned = converted.records | "Rules" >> RuleFilter(
        RuleConfig(illegal_words=("as an ai language model",), max_chars=4000))
    # Greedy order = the rows' "n" column; `pool` texts (e.g. seed tasks) count as earlier.
    novel = cleaned.kept | "Novelty" >> NoveltyFilter(threshold=0.7, order_by=input_order,
                                                      pool=pool)
    unique = novel.kept | "NearDup" >> NearDuplicateFilter(
        MinHashParams(num_perm=128, bands=16, rows=8, shingle_size=3, threshold=0.7, seed=1),
        order_by=input_order)

    _ = (unique.kept
         | "KeptRows" >> beam.Map(to_row)
         | "WriteKept" >> beam.io.WriteToParquet(
             f"{out_prefix}-kept", RECORD_SCHEMA, file_name_suffix=".parquet", num_shards=1))
    _ = ((cleaned.rejected, novel.rejected, unique.rejected)
         | "AllRejected" >> beam.Flatten()
         | "RejectedJson" >> beam.Map(lambda r: json.dumps(to_row(r), default=list))
         | "WriteRejected" >> beam.io.WriteToText(
             f"{out_prefix}-rejected", file_name_suffix=".jsonl", num_shards=1))
    _ = (converted.failed
         | "FailedJson" >> beam.Map(lambda f: json.dumps(to_row(f)))
         | "WriteFailed" >> beam.io.WriteToText(
             f"{out_prefix}-failed", file_name_suffix=".jsonl", num_shards=1))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("rows", help="JSON Lines input")
    parser.add_argument("out_prefix", help="output path prefix")
    args, beam_args = parser.parse_known_args(argv)
    with beam.Pipeline(options=PipelineOptions(beam_args or ["--runner=FnApiRunner"])) as p:
        build(p, args.rows, args.out_prefix)


if __name__ == "__main__":
    main()
