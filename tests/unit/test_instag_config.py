"""#InsTag config validation, multi-turn input rows and tag requests (no Beam, no server)."""

from __future__ import annotations

import json

import pytest
from conftest import ROOT

from pipelines.config import RunConfig, load_config
from pipelines.errors import InputError
from pipelines.recipes.instag.config import InsTagConfig
from pipelines.recipes.instag.steps import query_turns, tag_requests
from pipelines.settings import (
    DEFAULT_SERVER_ARGS,
    STRUCTURED_OUTPUTS_FLAG,
    GeneratorConfig,
    InputConfig,
)
from pipelines.transforms.conversations import first_exchange, read_messages, user_turns
from schemas import InstructionRecord, Message


def test_demo_config_loads_and_every_server_can_decode_json_schemas():
    cfg = load_config(ROOT / "configs" / "instag_demo.yaml")
    assert cfg.recipe == "instag" and cfg.instag.structured_output
    assert STRUCTURED_OUTPUTS_FLAG in cfg.generator.server_args
    assert STRUCTURED_OUTPUTS_FLAG in DEFAULT_SERVER_ARGS  # one shared server per model


def test_structured_output_needs_the_server_flag(tmp_path):
    with pytest.raises(ValueError, match="structured-outputs-config"):
        RunConfig(recipe="instag", output_dir="x", input=InputConfig(path="q.jsonl"),
                  generator=GeneratorConfig(server_args=("--enforce-eager",)))
    RunConfig(recipe="instag", output_dir="x", input=InputConfig(path="q.jsonl"),
              generator=GeneratorConfig(server_args=("--enforce-eager",)),
              instag=InsTagConfig(structured_output=False))


def test_bad_instag_values_name_file_line_and_field(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("recipe: instag\noutput_dir: o\ninput:\n  path: q.jsonl\n"
                    "instag:\n  min_confidence: 1.5\n")
    with pytest.raises(InputError, match=r"c.yaml:6: field 'instag.min_confidence'"):
        load_config(path)
    path.write_text("recipe: instag\noutput_dir: o\n")
    with pytest.raises(InputError, match="field 'input' is required for recipe 'instag'"):
        load_config(path)


def test_messages_in_both_shapes_become_one_canonical_form():
    sharegpt = [{"from": "system", "value": "Be brief."}, {"from": "human", "value": "Hi"},
                {"from": "gpt", "value": "Hello"}, {"from": "human", "value": "Bye"}]
    openai = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
              {"role": "assistant", "content": "Hello"}, {"role": "user", "content": "Bye"}]
    a = read_messages({"m": sharegpt}, "m", "f:1")
    assert a == read_messages({"m": json.dumps(openai)}, "m", "f:1") == openai
    assert first_exchange(a) == ("Hi", "Hello")
    assert user_turns(json.dumps(a)) == ["Hi", "Bye"]


@pytest.mark.parametrize("value, message", [
    ("not json", "not JSON"), ({"a": 1}, "must be a list"), ([3], "message 0 is not"),
    ([{"role": "robot", "content": "x"}], "unknown role"),
    ([{"role": "user"}], "no text content"),
])
def test_bad_conversations_are_one_clear_error(value, message):
    with pytest.raises(InputError, match=message):
        read_messages({"m": value}, "m", "data.jsonl:3")


def _record(**kw) -> InstructionRecord:
    base = dict(id="r1", content_hash="h", recipe="filter", stage="input", round=0,
                instruction="Translate the text.", input="Bonjour")
    return InstructionRecord(**(base | kw))


def test_one_request_per_user_turn_with_its_own_seed_and_schema():
    assert query_turns(_record()) == ["Translate the text.\n\nBonjour"]
    conversation = json.dumps([{"role": "user", "content": "A?"},
                               {"role": "assistant", "content": "a"},
                               {"role": "user", "content": "B?"}])
    requests = tag_requests(_record(conversation=conversation), InsTagConfig(max_tags=3), 7)
    assert [r.context for r in requests] == [0, 1]
    assert requests[0].prompt.endswith("\nQuery: A?") and requests[1].prompt.endswith("B?")
    assert len({r.seed for r in requests}) == 2 and len({r.request_id for r in requests}) == 2
    assert requests[0].extra_body["structured_outputs"]["json"]["maxItems"] == 3
    assert requests[0].api == "chat" and requests[0].sampling["temperature"] == 0.0
    plain = tag_requests(_record(), InsTagConfig(structured_output=False, api="completions"), 7)
    assert plain[0].extra_body is None and plain[0].prompt.endswith("\nAssistant:")
    assert tag_requests(_record(instruction=" ", input=""), InsTagConfig(), 7) == []


def test_the_schema_is_part_of_the_cache_key():
    from dataclasses import replace

    from pipelines.generators.cache import cache_key

    request = tag_requests(_record(), InsTagConfig(), 7)[0]
    bare = replace(request, extra_body=None)
    assert cache_key("m", "r", request) != cache_key("m", "r", bare)


def test_a_chained_ultrachat_dialogue_is_tagged_turn_by_turn():
    """`then: [instag]` after UltraChat hands over rows with `messages`, not `conversation`."""
    messages = (Message("user", "How do tides work?"), Message("assistant", "The moon."),
                Message("user", "  "), Message("user", "And spring tides?"))
    assert query_turns(_record(messages=messages)) == ["How do tides work?", "And spring tides?"]
