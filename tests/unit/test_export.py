"""Export formatting (Alpaca, ShareGPT, OpenAI chat), global id order across shards, and the
incremental JSON writer; shards are written here with pyarrow, no Beam."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.errors import InputError
from pipelines.outputs.export import (
    alpaca_item,
    export,
    iter_rows,
    openai_item,
    prompt_text,
    sharegpt_item,
    write_items,
)
from schemas import RECORD_SCHEMA, InstructionRecord, to_row


def _record(rid: str, instruction: str = "Name a colour.", input_text: str = "",
            output: str = "Red.", **extra: object) -> dict:
    rec = InstructionRecord(id=rid, content_hash="h", recipe="self_instruct", stage="instance",
                            round=1, instruction=instruction, input=input_text, output=output,
                            generator="m", prompt_ref="self_instruct/x@v1", **extra)
    return to_row(rec)


def _run_dir(tmp_path, shards: list[list[dict]]):
    data = tmp_path / "run" / "data"
    data.mkdir(parents=True)
    for i, rows in enumerate(shards):
        pq.write_table(pa.Table.from_pylist(rows, schema=RECORD_SCHEMA),
                       data / f"part-{i:05d}-of-{len(shards):05d}.parquet")
    (tmp_path / "run" / "manifest.json").write_text("{}")
    return tmp_path / "run"


def test_prompt_joins_instruction_and_input_with_a_blank_line():
    assert prompt_text("Sum these.", "1, 2") == "Sum these.\n\n1, 2"
    assert prompt_text("Name a colour.", "") == "Name a colour."
    assert prompt_text("Name a colour.", None) == "Name a colour."
    assert prompt_text("Name a colour.", "  \n") == "Name a colour."  # nothing to add


def test_the_three_shapes():
    row = _record("a", "Sum these.", "1, 2", "3")
    assert alpaca_item(row) == {"instruction": "Sum these.", "input": "1, 2", "output": "3"}
    assert sharegpt_item(row) == {"conversations": [
        {"from": "human", "value": "Sum these.\n\n1, 2"}, {"from": "gpt", "value": "3"}]}
    assert openai_item(row) == {"messages": [
        {"role": "user", "content": "Sum these.\n\n1, 2"},
        {"role": "assistant", "content": "3"}]}


def test_provenance_goes_under_meta_only_when_asked():
    row = _record("a")
    meta = {"id": "a", "generator": "m", "prompt_ref": "self_instruct/x@v1"}
    for fmt in (alpaca_item, sharegpt_item, openai_item):
        assert "meta" not in fmt(row)
        assert fmt(row, True)["meta"] == meta


def test_null_input_and_output_become_empty_strings():
    row = _record("a") | {"input": None, "output": None}
    assert alpaca_item(row) == {"instruction": "Name a colour.", "input": "", "output": ""}
    assert openai_item(row)["messages"][1] == {"role": "assistant", "content": ""}


def test_a_multi_turn_row_is_exported_whole_except_in_alpaca():
    turns = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
             {"role": "assistant", "content": "Hello"}, {"role": "user", "content": "Bye"},
             {"role": "assistant", "content": "Bye!"}]
    row = _record("a", "Hi", "", "Hello", conversation=json.dumps(turns))
    assert openai_item(row)["messages"] == turns
    assert [t["from"] for t in sharegpt_item(row)["conversations"]] == [
        "system", "human", "gpt", "human", "gpt"]
    assert alpaca_item(row) == {"instruction": "Hi", "input": "", "output": "Hello"}


def test_rows_come_out_in_global_id_order_across_shards(tmp_path):
    ids = [f"{i:04x}" for i in range(0, 3000, 7)]
    shards = [[_record(i) for i in ids[k::3]] for k in range(3)]
    shards.append([])  # an empty shard, as WriteShards writes them
    run_dir = _run_dir(tmp_path, shards)
    assert [row["id"] for row in iter_rows(run_dir)] == ids


def test_an_unsorted_shard_is_sorted_on_its_own(tmp_path):
    run_dir = _run_dir(tmp_path, [[_record("c"), _record("a")], [_record("b")]])
    assert [row["id"] for row in iter_rows(run_dir)] == ["a", "b", "c"]


@pytest.mark.parametrize("json_lines", [False, True])
def test_writer_output_parses_with_unicode_and_when_empty(tmp_path, json_lines):
    items = [{"text": "naïve — 日本"}, {"text": "two"}]
    path = tmp_path / "out.json"
    assert write_items(path, iter(items), json_lines=json_lines) == 2
    text = path.read_text(encoding="utf-8")
    parsed = [json.loads(line) for line in text.splitlines()] if json_lines else json.loads(text)
    assert parsed == items and "日本" in text  # UTF-8, not \u escapes
    assert write_items(path, iter([]), json_lines=json_lines) == 0
    assert path.read_text() == ("" if json_lines else "[]\n")
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_a_failing_export_leaves_no_file(tmp_path):
    def items():
        yield {"a": 1}
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_items(tmp_path / "out.json", items(), json_lines=False)
    assert list(tmp_path.iterdir()) == []


def test_export_writes_beside_the_run_by_default(tmp_path, monkeypatch):
    run_dir = _run_dir(tmp_path, [[_record("b"), _record("a", "Sum.", "1", "1")]])
    path, count = export(run_dir, "alpaca")
    assert path == tmp_path / f"{run_dir.name}.export" / "alpaca.json" and count == 2
    monkeypatch.chdir(run_dir)  # `instructbeam export .` from inside the run folder
    assert export(Path("."), "alpaca")[0].resolve() == path
    assert json.loads(path.read_text())[0] == {"instruction": "Sum.", "input": "1", "output": "1"}
    path, _ = export(run_dir, "openai", tmp_path / "x.jsonl", with_provenance=True)
    assert [json.loads(x)["meta"]["id"] for x in path.read_text().splitlines()] == ["a", "b"]


def test_not_a_finished_run_or_unknown_format_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="manifest.json"):
        export(tmp_path, "alpaca")
    run_dir = _run_dir(tmp_path, [[_record("a")]])
    with pytest.raises(InputError, match="unknown export format"):
        export(run_dir, "csv")


def test_alpaca_refuses_dialogues_unless_told_to_keep_the_first_exchange(tmp_path):
    """Issue 24: an Alpaca export of dialogues kept only the first exchange without a word."""
    from schemas import Message

    turns = (Message("user", "Hi"), Message("assistant", "Hello"), Message("user", "Why?"),
             Message("assistant", "Because."))
    run_dir = _run_dir(tmp_path, [[_record("a", "Hi", "", "Hello", messages=turns),
                                   _record("b")]])
    with pytest.raises(InputError, match="row a is a dialogue of 2 exchanges"):
        export(run_dir, "alpaca")
    assert not (tmp_path / "run.export" / "alpaca.json").exists()
    path, count = export(run_dir, "alpaca", first_exchange=True)
    assert count == 2 and json.loads(path.read_text())[0]["output"] == "Hello"
    assert export(run_dir, "sharegpt")[1] == 2  # whole dialogues: nothing to refuse


def _atomic_rows() -> list[dict]:
    """Rows as the atomic transforms derive them from real-looking sources."""
    from dataclasses import replace

    from filters.atomic_tasks import RecombinationRule, recombine_group, reverse
    from schemas import stable_id

    def source(n: int, instruction: str, output: str, inp: str = "") -> InstructionRecord:
        rid = stable_id("src", n)
        return InstructionRecord(id=rid, content_hash=rid, recipe="filter", stage="input",
                                 round=0, instruction=instruction, input=inp, output=output)

    sources = [source(1, "Greet a customer.", "Welcome to our shop, how can I help you today?"),
               source(2, "Name a fruit.", "A ripe banana"), source(3, "Name a metal.", "Iron"),
               source(4, "Name a river.", "The Danube")]
    reversed_row = reverse(sources[0], "atomic_reversal")
    with_input = reverse(replace(sources[1], input="Fruits: banana, apple",
                                 output="banana apple and pear"), "atomic_reversal")
    choice = next(d for _, _, d in recombine_group(sources, RecombinationRule(options=3,
                  group_size=4), "atomic_recombination") if d is not None)
    return [to_row(r) for r in (reversed_row, with_input, choice, sources[2])]


def test_ecomgpt_six_parts_with_what_the_atomic_transforms_know(tmp_path):
    rows = _atomic_rows()
    path, count = export(_run_dir(tmp_path, [rows]), "ecomgpt")
    assert path.name == "ecomgpt.jsonl" and count == 4
    items = {json.loads(x)["prompt"][:20]: json.loads(x) for x in path.read_text().splitlines()}
    assert all(list(item) == ["task_description", "prompt", "input", "candidate_labels",
                              "output_constraints", "output"] for item in items.values())
    choice = items["Choose the answer th"]
    assert choice["candidate_labels"] == ["A", "B", "C"]
    assert choice["output_constraints"] == "Reply with one letter only: A, B or C."
    assert choice["output"] in choice["candidate_labels"]
    assert choice["task_description"].startswith("Answer matching")
    request = items["Write the question o"]
    assert request["output_constraints"].startswith("Output only the request")
    assert request["task_description"].startswith("Task reversal")
    assert request["output"] == "Greet a customer." and request["candidate_labels"] == []
    recover = next(i for p, i in items.items() if p.startswith("The text below"))
    assert recover["output_constraints"].startswith("Output only the input text")
    plain = items["Name a metal."]  # a row no transform made: nothing is guessed
    assert (plain["task_description"], plain["candidate_labels"],
            plain["output_constraints"]) == ("", [], "")


def test_ecomgpt_refuses_a_dialogue_instead_of_cutting_it(tmp_path):
    from schemas import Message

    turns = (Message("user", "Hi"), Message("assistant", "Hello"),
             Message("user", "More?"), Message("assistant", "Sure."))
    run_dir = _run_dir(tmp_path, [[_record("d", "Hi", output="Hello", messages=turns)]])
    with pytest.raises(InputError, match="'d' is a dialogue of 2 exchanges"):
        export(run_dir, "ecomgpt")
    assert not (tmp_path / "run.export" / "ecomgpt.jsonl").exists()
