"""Filter-only runs over an existing dataset (JSONL or Parquet): rules, audit, bad input."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers import read_rows

from pipelines.config import RunConfig
from pipelines.errors import InputError
from pipelines.run import run
from pipelines.settings import FiltersConfig, InputConfig, RulesConfig

ROWS = [
    {"instruction": "Name a red fruit.", "input": "", "output": "Apple"},
    {"instruction": "Translate  to French:", "input": "cat", "output": "chat"},
    {"instruction": "Give me a cheap pills deal.", "input": "", "output": "No."},
    {"instruction": "Say nothing.", "input": "", "output": ""},
    {"instruction": "Write a long text.", "input": "", "output": "word " * 400},
]


def _config(tmp_path, path: str, **kw) -> RunConfig:
    return RunConfig(recipe="filter", output_dir=str(tmp_path / "out"),
                     input=InputConfig(path=path, **kw),
                     filters=FiltersConfig(rules=RulesConfig(illegal_words=("cheap pills",),
                                                             max_chars=1000)),
                     audit_per_source=2)


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_filter_run_over_a_dataset(tmp_path, fmt):
    path = tmp_path / f"data.{fmt}"
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    else:
        pq.write_table(pa.Table.from_pylist(ROWS), path)
    result = run(_config(tmp_path, str(path)))
    out = result.output_dir
    kept = read_rows(out, "data")
    assert sorted(r["instruction"] for r in kept) == ["Name a red fruit.",
                                                      "Translate to French:"]
    reasons = sorted(r["reason"] for r in read_rows(out, "rejected"))
    assert reasons == ["empty_output", "illegal_word", "overlong_instance"]
    assert all(c["holds"] for c in result.manifest["accounting"])
    assert result.manifest["stages"]["input"]["produced"] == 5
    audit = (out / "audit" / "external_data.jsonl").read_text().splitlines()
    assert len(audit) == 2 and all(json.loads(line)["id"] for line in audit)
    assert {r["position"] for r in kept} == {1, 2}


def test_missing_field_is_one_clear_error(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text(json.dumps({"instruction": "x", "output": "y"}) + "\n"
                    + json.dumps({"prompt": "x", "output": "y"}) + "\n")
    with pytest.raises(InputError, match=r"data.jsonl:2: field 'instruction' is missing"):
        run(_config(tmp_path, str(path), input_field=None))
    assert not (tmp_path / "out").exists()


def test_filter_chain_with_novelty_and_near_duplicates(tmp_path):
    from pipelines.settings import NearDupConfig, NoveltyFilterConfig

    base = ("Describe the main causes of the industrial revolution in Britain and explain "
            "how steam power, coal, textile factories and new banking habits changed the "
            "daily life of ordinary workers in the growing cities of the north")
    rows = [{"instruction": base, "input": "", "output": "A long answer about history."},
            # same text, one word changed: a near duplicate (MinHash) but also not novel
            {"instruction": base.replace("ordinary", "typical"), "input": "",
             "output": "A long answer about history."},
            {"instruction": "Name three primary colors.", "input": "", "output": "Red."},
            {"instruction": "Name three primary colors now.", "input": "",
             "output": "Blue."},
            {"instruction": "Write a haiku about autumn leaves.", "input": "",
             "output": "Leaves fall."}]
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = RunConfig(recipe="filter", output_dir=str(tmp_path / "out"),
                    input=InputConfig(path=str(path)),
                    filters=FiltersConfig(novelty=NoveltyFilterConfig(enabled=True),
                                          near_dup=NearDupConfig(enabled=True)))
    result = run(cfg)
    kept = read_rows(result.output_dir, "data")
    rejected = read_rows(result.output_dir, "rejected")
    # input order decides: the first of each similar pair survives
    assert sorted(r["position"] for r in kept) == [1, 3, 5]
    assert {(r["position"], r["reason"]) for r in rejected} == {(2, "not_novel"),
                                                               (4, "not_novel")}
    assert all(c["holds"] for c in result.manifest["accounting"])
    assert result.manifest["config"]["filters"]["near_dup"]["num_perm"] == 128
    assert result.manifest["stages"]["near_dup"]["produced"] == 3


def test_input_on_a_remote_filesystem(tmp_path):
    """A ``scheme://`` glob (gs:// on Dataflow) is listed and read through Beam's FileSystems."""
    import memory_filesystem as memfs

    jsonl = "".join(json.dumps(r) + "\n" for r in ROWS[:2]).encode()
    buffer = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pylist(ROWS[2:]), buffer)
    memfs.FILES.update({"memtest://bucket/in/a.jsonl": jsonl,
                        "memtest://bucket/in/b.parquet": buffer.getvalue().to_pybytes(),
                        "memtest://bucket/other/c.jsonl": jsonl})
    result = run(_config(tmp_path, "memtest://bucket/in/*"))
    kept = read_rows(result.output_dir, "data")
    assert sorted(r["instruction"] for r in kept) == ["Name a red fruit.",
                                                      "Translate to French:"]
    assert result.manifest["stages"]["input"]["produced"] == len(ROWS)
    assert {r["origin"] for r in kept} == {"external_a"}

    with pytest.raises(InputError, match="memtest://bucket/none/\\*: input dataset not found"):
        run(_config(tmp_path, "memtest://bucket/none/*"))


def test_normalization_keeps_code_and_is_counted_per_field(tmp_path):
    """Through the real pipeline: code answers keep their indentation, and the manifest and
    the summary say how many records normalization changed, per field."""
    from pipelines.outputs.report import format_summary
    from pipelines.recipes.registry import recipe_info

    code = "```python\ndef f(x):\n    if x:\n        return  x\n```"
    rows = [{"instruction": "Fix  this.", "input": "def f(x):\n\tif x:\n\t\treturn x",
             "output": f"Use a guard:\n\n{code}"},
            {"instruction": "Show a Makefile rule.", "input": "",
             "output": "Here  it is:\n\nall:\n\tcc  -o app main.c   \n\n\n"},
            {"instruction": "Say hi.", "input": "", "output": "Hi!"}]
    path = tmp_path / "data.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = run(_config(tmp_path, str(path)))
    kept = {r["instruction"]: r for r in read_rows(result.output_dir, "data")}
    assert kept["Fix this."]["input"] == rows[0]["input"]
    assert kept["Fix this."]["output"] == rows[0]["output"]
    # the recipe line is code: kept byte for byte; the prose and the blank lines at the end
    # are cleaned
    assert kept["Show a Makefile rule."]["output"] == "Here it is:\n\nall:\n\tcc  -o app main.c   "
    assert result.manifest["stages"]["rules"]["normalized"] == {"instruction": 1, "output": 1}
    summary = format_summary(result.manifest, result.output_dir, recipe_info())
    assert "rules/instruction: 1 of 3" in summary and "rules/output: 1 of 3" in summary
