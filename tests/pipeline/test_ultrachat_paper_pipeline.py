"""UltraChat as the paper describes it, through the real pipeline (issue 24): one generic
request over three passages is three opening lines, the filter chain reads every turn and
names the failing one, each dialogue has a persona, passages are routed to content types,
the audit sample carries whole dialogues and the report measures topic diversity."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
from helpers import read_rows
from ultrachat_fakes import ChatScript, ChatServer

from pipelines.config import RunConfig
from pipelines.recipes.ultrachat.config import (
    MaterialsConfig,
    UltraChatConfig,
    WorldConfig,
    WritingConfig,
)
from pipelines.run import run
from pipelines.settings import CacheConfig, FiltersConfig, GeneratorConfig, InputConfig, RulesConfig

WORDS = ("the keeper climbed the stairs every evening to light the lamp and watched the "
         "ships pass the reef while the gulls circled the harbour and the tide came in")
PASSAGES = {"lighthouse": f"The lighthouse story: {WORDS}.",
            "windmill": f"The windmill news report: {WORDS}.",
            "bakery": f"The bakery recipe: preheat the oven, then {WORDS}."}
PERSONA = "A retired sailor who likes short, practical answers."
CONTENT_TYPES = """
types:
  - name: recipe
    keywords: [recipe, oven]
    requests: [turn it into a checklist]
  - name: news
    keywords: [news]
    requests: [write a headline for it]
default: {name: general text, requests: [summarize it]}
"""


@dataclass
class GenericRequests(ChatScript):
    """Every passage gets the same request; the windmill dialogue's second reply says
    "as an AI" past the turn rules' refusal window (only the filter chain can see it)."""

    def items(self, prompt: str, seed: int) -> str:
        if prompt.startswith("Here is a text"):
            return "1. Summarize this text in two sentences."
        return super().items(prompt, seed)

    def assistant(self, messages: list[dict], seed: int) -> str:
        if "windmill" in messages[0]["content"] and len(messages) == 3:
            return (" ".join(f"Windmill number {i} grinds grain for village {i * 7}." for i in
                             range(30)) + " As an AI, I find them calm.")
        return super().assistant(messages, seed)


@pytest.fixture
def server():
    server = ChatServer(GenericRequests())
    server.start()
    yield server
    server.stop()


def test_ultrachat_as_the_paper_describes_it(server, tmp_path):
    passages = tmp_path / "passages.jsonl"
    passages.write_text("".join(json.dumps({"text": t}) + "\n" for t in PASSAGES.values()))
    types = tmp_path / "types.yaml"
    types.write_text(CONTENT_TYPES)
    out = tmp_path / "out"
    cfg = RunConfig(
        recipe="ultrachat", output_dir=str(out), num_shards=1, audit_per_source=10,
        input=InputConfig(path=str(passages), instruction_field="text", input_field=None,
                          output_field=None),
        generator=GeneratorConfig(backend="openai", base_url=server.base_url,
                                  model="scripted", max_concurrency=8, timeout_s=5.0,
                                  max_attempts=2, backoff_s=0.01, max_backoff_s=0.02),
        cache=CacheConfig(enabled=False), max_failure_ratio=1.0,
        filters=FiltersConfig(rules=RulesConfig(illegal_words=("as an ai",))),
        ultrachat=UltraChatConfig(
            world=WorldConfig(enabled=False), writing=WritingConfig(enabled=False),
            materials=MaterialsConfig(instructions_per_passage=1, min_passage_words=10,
                                      content_types_file=str(types),
                                      match_fields=("passage",)),
            personas=(PERSONA,), min_rounds=2, max_rounds=2, near_dup_openings=True))
    manifest = run(cfg).manifest
    assert all(c["holds"] for c in manifest["accounting"]), manifest["accounting"]
    stages = manifest["stages"]
    # one generic request over three passages: three opening lines, none "not novel" and
    # none a near duplicate (MinHash on the request alone leaves sector 3 to the ROUGE pass)
    assert stages["ultrachat_openings"]["kept"] == 3
    assert not stages["ultrachat_openings"].get("rejected")
    # the filter chain read turn 4 and named it
    [dropped] = [r for r in read_rows(out, "rejected") if r["filter_stage"] == "rules"]
    assert dropped["reason"] == "illegal_word"
    assert dropped["detail"] == "as an ai in turn 4 (assistant)"
    kept = read_rows(out, "data")
    assert len(kept) == 2 and all(len(r["messages"]) == 4 for r in kept)
    assert {r["content_type"] for r in kept} == {"general text", "recipe"}  # windmill: news
    assert all(r["persona"] == PERSONA for r in kept)
    user_prompts = [b["messages"][-1]["content"] for b in server.script.bodies
                    if b["messages"][-1]["content"].startswith("You play the human user")]
    assert user_prompts and all(PERSONA in p for p in user_prompts)
    # the audit sample shows every turn
    audit = [json.loads(line) for path in (out / "audit").glob("*.jsonl")
             for line in path.read_text(encoding="utf-8").splitlines()]
    assert audit and all(len(a["messages"]) == 4 for a in audit)
    report = json.loads((out / "reports" / "ultrachat.json").read_text(encoding="utf-8"))
    assert report["topic_embedding"] == "all-minilm-l6-v2"
    assert (report["topic_diversity"] is not None and 0 < report["topic_diversity"] <= 1) \
        or "unavailable" in report["topic_diversity_note"]

