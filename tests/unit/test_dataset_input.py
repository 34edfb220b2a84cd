"""Reading existing datasets for filter runs: JSON arrays streamed in chunks, a slice of the first
rows, data files inside installed packages (``pkg://``), conversations without a user turn."""

from __future__ import annotations

import json

import pytest
from conftest import ROOT

from filters.rules import RuleConfig, check_rules
from pipelines.config import load_config
from pipelines.errors import InputError
from pipelines.settings import InputConfig
from pipelines.transforms import dataset_input
from pipelines.transforms.dataset_input import input_files, iter_rows, to_record, validate
from schemas import Reason

ROWS = [{"id": f"r{i}", "instruction": f"Task number {i}", "values": [i, i * 1.5, "x"]}
        for i in range(1, 8)]
SEEDS = "pkg://prompts/self_instruct/seed_tasks.v1.jsonl"  # a data file of our own package


@pytest.fixture
def small_chunks(monkeypatch):
    """Chunks of 7 characters: every row spans several reads."""
    monkeypatch.setattr(dataset_input, "_CHUNK", 7)


@pytest.mark.parametrize("layout", ["compact", "indented"])
def test_json_array_rows_across_chunk_borders(tmp_path, small_chunks, layout):
    path = tmp_path / "rows.json"
    path.write_text(json.dumps(ROWS, indent=2 if layout == "indented" else None))
    assert list(iter_rows(str(path))) == list(enumerate(ROWS, start=1))
    assert list(iter_rows(str(path), limit=3)) == list(enumerate(ROWS[:3], start=1))
    empty = tmp_path / "empty.json"
    empty.write_text(" [ ]\n")
    assert list(iter_rows(str(empty))) == []


def test_a_slice_never_reads_the_truncated_tail(tmp_path, small_chunks):
    """ShareGPT's packaged file stops in the middle of a conversation: a slice before the cut
    reads; reading on to the cut is one error naming the item."""
    path = tmp_path / "cut.json"
    path.write_text(json.dumps(ROWS)[:-30])
    assert [n for n, _ in iter_rows(str(path), limit=5)] == [1, 2, 3, 4, 5]
    with pytest.raises(InputError, match=r"cut.json item 7: malformed JSON"):
        list(iter_rows(str(path)))


@pytest.mark.parametrize(("text", "message"), [
    ('{"a": 1}', "expected a JSON array of rows"),
    ('[{"a": 1}, 3]', "item 2: expected a JSON object"),
    ('[{"a": 1} {"b": 2}]', "item 2: malformed JSON \\(expected ',' or ']' after item 1\\)"),
])
def test_bad_json_arrays_are_one_clear_error(tmp_path, text, message):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(InputError, match=message):
        list(iter_rows(str(path)))


def test_max_rows_per_file_limits_validation_and_reading(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS) + "not json\n")
    cfg = InputConfig(path=str(path), input_field=None, output_field=None, id_field="id",
                      max_rows_per_file=4)
    assert validate(cfg) == 4  # the bad last line lies beyond the slice
    with pytest.raises(InputError, match="rows.jsonl:8: malformed JSON"):
        validate(InputConfig(path=str(path), input_field=None, output_field=None))


def test_package_data_file_as_input():
    cfg = InputConfig(path=SEEDS, input_field=None, output_field=None, id_field="id",
                      max_rows_per_file=5)
    assert input_files(cfg) == [SEEDS]
    assert validate(cfg) == 5
    number, row = next(iter_rows(SEEDS))
    record = to_record(row, cfg, SEEDS, 0, number)
    assert record.origin == "external_seed_tasks.v1" and record.instruction


@pytest.mark.parametrize(("path", "message"), [
    ("pkg://no_such_package_xyz/data.json", "Python package 'no_such_package_xyz' is not "
                                            "installed"),
    ("pkg://prompts/self_instruct/missing.jsonl", "no such file in package 'prompts'"),
    ("pkg://prompts", "no such file in package 'prompts'"),
])
def test_missing_package_data_is_one_clear_error(path, message):
    with pytest.raises(InputError, match=message):
        input_files(InputConfig(path=path))


def test_config_keeps_package_paths_and_checks_the_slice(tmp_path):
    config = tmp_path / "c.yaml"
    head = f"recipe: filter\noutput_dir: out\ninput:\n  path: {SEEDS}\n"
    config.write_text(head + "  max_rows_per_file: 0\n")
    with pytest.raises(InputError, match=r"c.yaml:5: field 'input.max_rows_per_file' must be"):
        load_config(config)
    config.write_text(head)
    assert load_config(config).input.path == SEEDS


def test_conversation_without_a_user_turn_is_an_empty_instruction(tmp_path):
    """Real chat corpora hold empty conversations and reply-only fragments: the rules filter
    rejects them with a reason instead of the whole run stopping on them."""
    cfg = InputConfig(path=str(tmp_path / "chats.jsonl"), messages_field="conversations")
    for turns, reason in (([], Reason.EMPTY_INSTRUCTION),
                          ([{"from": "gpt", "value": "Anything else?"}],
                           Reason.CONVERSATION_FRAGMENT)):
        record = to_record({"conversations": turns}, cfg, cfg.path, 0, 1)
        assert (record.instruction, record.output) == ("", "")
        assert check_rules(record, RuleConfig()).reason == reason


def test_sharegpt_fragments_are_rejected_with_a_reason_on_real_rows():
    """ShareGPT holds conversations cut from longer chats: they open with the assistant's
    message, so their first user turn is a mid-conversation request. The filter demo kept
    589 of them; the rules now reject them as `conversation_fragment` (unless
    `reject_fragments: false`), and keep whole conversations."""
    cfg = load_config(ROOT / "configs" / "filter_demo.yaml").input
    path = input_files(cfg)[0]
    verdicts = []
    for number, row in iter_rows(path, 400):
        record = to_record(row, cfg, path, 0, number)
        first = next(m["role"] for m in json.loads(record.conversation) + [{"role": "none"}]
                     if m["role"] != "system")
        verdicts.append((first, check_rules(record, RuleConfig()),
                         check_rules(record, RuleConfig(reject_fragments=False))))
    fragments = [v for first, v, _ in verdicts if first == "assistant"]
    assert len(fragments) > 50  # about a third of ShareGPT's rows
    assert all(v.reason == Reason.CONVERSATION_FRAGMENT for v in fragments)
    assert not any(v.reason == Reason.CONVERSATION_FRAGMENT
                   for first, v, _ in verdicts if first != "assistant")
    assert not any(off.reason == Reason.CONVERSATION_FRAGMENT for _, _, off in verdicts)


def test_filter_demo_reads_a_packaged_corpus():
    cfg = load_config(ROOT / "configs" / "filter_demo.yaml")
    assert cfg.input.path.startswith(dataset_input.PACKAGE_SCHEME)
    assert cfg.input.max_rows_per_file and cfg.input.messages_field == "conversations"


def test_a_dotted_field_reads_into_nested_rows():
    row = {"instruction": "Say hi.", "instances": [{"input": "", "output": "Hi!"}]}
    cfg = InputConfig(path="x.jsonl", input_field="instances.0.input",
                      output_field="instances.0.output")
    record = to_record(row, cfg, "x.jsonl", 0, 1)
    assert (record.instruction, record.input, record.output) == ("Say hi.", "", "Hi!")
    with pytest.raises(InputError, match="x.jsonl:1.*'instances.1.output' is missing"):
        to_record(row, InputConfig(path="x.jsonl", output_field="instances.1.output",
                                   input_field=None), "x.jsonl", 0, 1)


def test_the_instag_demo_reads_the_seed_outputs():
    cfg = load_config(ROOT / "configs" / "instag_demo.yaml")
    assert cfg.input is not None
    rows = list(iter_rows(str(ROOT / "prompts" / "self_instruct" / "seed_tasks.v1.jsonl")))
    records = [to_record(row, cfg.input, "seeds", 0, n) for n, row in rows]
    assert records and all(r.output for r in records)
