"""A finished run drops straight into the tools users already have: its Parquet loads unchanged
with Hugging Face `datasets` (offline), pandas, DuckDB and Polars; `instructbeam export`
writes Alpaca, ShareGPT and OpenAI chat files that match the data; the dataset card is there.

One small Self-Instruct run (scripted generator, FnApiRunner, 2 shards) serves every test."""

from __future__ import annotations

import importlib
import json
import math

import pytest
import yaml
from conftest import skip_or_fail
from fakes import ScriptedServer
from helpers import read_rows, scripted_config

from pipelines.cli import main
from pipelines.outputs.export import prompt_text
from pipelines.run import run
from schemas import RECORD_SCHEMA

COMPARED = ("id", "instruction", "input", "output", "round", "rouge_l_max", "prompt_ref")


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    server = ScriptedServer()
    server.start()
    try:
        out = tmp_path_factory.mktemp("ecosystem") / "out"
        result = run(scripted_config(server.base_url, out, None, max_prompts=8))
    finally:
        server.stop()
    rows = sorted(read_rows(out, "data"), key=lambda r: r["id"])
    assert len(rows) >= 10 and all(r["input"] for r in rows)  # empty inputs: unit tests
    return out, result.manifest, rows


def _tool(name: str):
    """The library, or a skip (a failure under CI: the `test` extra installs all four)."""
    try:
        return importlib.import_module(name)
    except ImportError:
        skip_or_fail(f"{name} is not installed (pip install -e '.[test]')")


def _same(a: object, b: object) -> bool:
    """Equal values, with a missing float (NaN / None) equal to None."""
    if isinstance(a, float) and math.isnan(a):
        a = None
    return a == b


def _assert_matches(records: list[dict], rows: list[dict]) -> None:
    records = sorted(records, key=lambda r: r["id"])
    assert len(records) == len(rows)
    for got, want in zip(records, rows, strict=True):
        for name in COMPARED:
            assert _same(got[name], want[name]), (name, got[name], want[name])


@pytest.fixture
def offline_hf(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf" / "datasets"))
    datasets = _tool("datasets")
    return datasets, str(tmp_path / "hf" / "datasets")


def test_hugging_face_datasets_loads_the_shards(finished_run, offline_hf):
    out, _, rows = finished_run
    datasets, cache = offline_hf
    ds = datasets.load_dataset("parquet", data_files=str(out / "data" / "*.parquet"),
                               split="train", cache_dir=cache)
    assert ds.column_names == RECORD_SCHEMA.names
    _assert_matches(ds.to_list(), rows)
    # Through the card's front matter: `load_dataset(<dir>)` finds data/*.parquet alone.
    via_card = datasets.load_dataset(str(out), split="train", cache_dir=cache)
    assert via_card.num_rows == len(rows)
    assert sorted(via_card["id"]) == [r["id"] for r in rows]
    rejected = datasets.load_dataset(str(out), "rejected", split="train", cache_dir=cache)
    assert rejected.num_rows == len(read_rows(out, "rejected"))


def test_pandas_reads_the_data_directory(finished_run):
    pd = _tool("pandas")
    out, _, rows = finished_run
    df = pd.read_parquet(out / "data")
    assert list(df.columns) == RECORD_SCHEMA.names
    _assert_matches(df.to_dict("records"), rows)


def test_duckdb_queries_the_shards(finished_run):
    duckdb = _tool("duckdb")
    out, _, rows = finished_run
    con = duckdb.connect()
    try:
        # DB-API calls: duckdb 2 dropped fetchone() on relations; a cursor keeps it.
        cur = con.execute(f"SELECT * FROM read_parquet('{out}/data/*.parquet') ORDER BY id")
        columns = [d[0] for d in cur.description]
        records = [dict(zip(columns, values, strict=True)) for values in cur.fetchall()]
        assert columns == RECORD_SCHEMA.names
        count = con.execute(f"SELECT count(*) FROM '{out}/data/*.parquet'").fetchone()[0]
        frame = duckdb.sql(f"SELECT * FROM '{out}/data/*.parquet'").df()  # the card's line
        assert len(frame) == len(rows)
    finally:
        con.close()
    assert count == len(rows)
    _assert_matches(records, rows)


def test_polars_reads_the_shards(finished_run):
    pl = _tool("polars")
    out, _, rows = finished_run
    df = pl.read_parquet(str(out / "data" / "*.parquet"))
    assert df.columns == RECORD_SCHEMA.names
    _assert_matches(df.to_dicts(), rows)


def _read(path, fmt: str) -> list[dict]:
    text = path.read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines()] if fmt == "openai" \
        else json.loads(text)


@pytest.mark.parametrize("fmt", ["alpaca", "sharegpt", "openai"])
def test_each_export_format_matches_the_data(finished_run, fmt, capsys):
    out, _, rows = finished_run
    assert main(["export", str(out), "--format", fmt]) == 0
    default = out.with_name(f"{out.name}.export") / {
        "alpaca": "alpaca.json", "sharegpt": "sharegpt.json", "openai": "openai.jsonl"}[fmt]
    assert f"wrote {len(rows)} {fmt} records to {default}" in capsys.readouterr().out
    items = _read(default, fmt)
    assert len(items) == len(rows)  # in id order, as the rows are sorted here
    for item, row in zip(items, rows, strict=True):
        prompt = prompt_text(row["instruction"], row["input"])
        if fmt == "alpaca":
            assert item == {k: row[k] for k in ("instruction", "input", "output")}
        elif fmt == "sharegpt":
            assert item == {"conversations": [{"from": "human", "value": prompt},
                                              {"from": "gpt", "value": row["output"]}]}
        else:
            assert item == {"messages": [{"role": "user", "content": prompt},
                                         {"role": "assistant", "content": row["output"]}]}


def test_export_with_provenance_to_a_chosen_file(finished_run, tmp_path):
    out, _, rows = finished_run
    target = tmp_path / "chat.jsonl"
    assert main(["export", str(out), "--format", "openai", "--output", str(target),
                 "--with-provenance"]) == 0
    metas = [item["meta"] for item in _read(target, "openai")]
    assert metas == [{k: r[k] for k in ("id", "generator", "prompt_ref")} for r in rows]


def test_export_of_a_directory_that_is_not_a_run_fails_clearly(tmp_path, capsys):
    assert main(["export", str(tmp_path), "--format", "alpaca"]) == 2
    assert "no manifest.json" in capsys.readouterr().err


def test_the_dataset_card_has_front_matter_and_the_counts(finished_run):
    out, manifest, rows = finished_run
    text = (out / "README.md").read_text(encoding="utf-8")
    matter = yaml.safe_load(text.split("---\n", 2)[1])
    assert matter["configs"][0]["data_files"] == [{"split": "train", "path": "data/*.parquet"}]
    assert matter["license"] == "other"  # a scripted model: its licence is unknown
    for stage, row in manifest["stages"].items():
        if "produced" in row:
            rejected = sum(row["rejected"].values())
            assert f"| {stage} | {row.get('in', '-')} | {row.get('ok', '-')} | " \
                   f"{row.get('failed', '-')} | {row['produced']} | {row['kept']} | " \
                   f"{rejected} |" in text
        for reason, n in row.get("rejected", {}).items():
            assert f"| {stage} | {reason} | {n} |" in text
    assert f"| data/ | {len(rows)} |" in text
    assert "| scripted | unversioned | " + str(len(rows)) + " |" in text
    for tool in ("load_dataset", "pd.read_parquet", "duckdb.sql", "pl.read_parquet",
                 "instructbeam export"):
        assert tool in text
    # The card is written before the manifest, which stays the last file of the run.
    assert (out / "README.md").stat().st_mtime_ns <= (out / "manifest.json").stat().st_mtime_ns
