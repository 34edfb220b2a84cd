"""UltraChat through the real pipeline (FnApiRunner, HTTP client, Parquet) against a scripted
chat model: the three sectors' opening lines, dialogues turn by turn, role drift, a failed
middle turn (dead letter with the dialogue so far), drawn rounds, the context limit, the
statistics, the multi-turn exports, and #InsTag reading the dialogues."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import pytest
from helpers import read_rows
from instag_fakes import ScriptedTagger
from ultrachat_fakes import ChatScript, ChatServer

from pipelines.config import RunConfig
from pipelines.outputs.export import export
from pipelines.recipes.instag.config import InsTagConfig
from pipelines.recipes.ultrachat.config import (
    MaterialsConfig,
    UltraChatConfig,
    WorldConfig,
    WritingConfig,
)
from pipelines.run import run
from pipelines.settings import CacheConfig, FiltersConfig, GeneratorConfig, InputConfig
from pipelines.transforms.provenance import derive_seed

PASSAGE = ("The old lighthouse keeper climbed the stairs every evening to light the lamp, "
           "counting the steps as his father had taught him, and watching the ships pass "
           "the reef while the gulls circled the harbour and the tide came in slowly.")


@pytest.fixture
def chat_server():
    servers = []

    def start(**script) -> ChatServer:
        server = ChatServer(ChatScript(**script))
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def _generator(server) -> GeneratorConfig:
    return GeneratorConfig(backend="openai", base_url=server.base_url, model="scripted",
                           max_concurrency=8, timeout_s=5.0, max_attempts=2, backoff_s=0.01,
                           max_backoff_s=0.02)


def _config(server, out: Path, *, input_path: Path | None = None, **uc) -> RunConfig:
    params = dict(
        world=WorldConfig(meta_topics=("volcanoes", "tides", "rivers"), subtopics_per_topic=0,
                          questions_per_topic=2, derived_per_question=0),
        writing=WritingConfig(enabled=False), min_rounds=3, max_rounds=3) | uc
    return RunConfig(
        recipe="ultrachat", output_dir=str(out), num_shards=2, audit_per_source=0,
        input=None if input_path is None else InputConfig(
            path=str(input_path), instruction_field="text", input_field=None,
            output_field=None),
        generator=_generator(server), cache=CacheConfig(enabled=False),
        max_failure_ratio=1.0, ultrachat=UltraChatConfig(**params))  # type: ignore[arg-type]


def _by_topic(rows: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for row in rows:
        out.setdefault(row["topic"] or row["sector"], []).append(row)
    return out


def test_three_sectors_drift_and_a_failed_middle_turn(chat_server, tmp_path):
    server = chat_server(drift_topic="tides", fail_topic="volcanoes")
    passages = tmp_path / "passages.jsonl"
    passages.write_text("".join(json.dumps({"text": t}) + "\n" for t in (
        PASSAGE, PASSAGE.replace("lighthouse", "windmill"), "Too short to use.")))
    out = tmp_path / "out"
    cfg = _config(server, out, input_path=passages,
                  world=WorldConfig(meta_topics=("volcanoes", "tides", "rivers"),
                                    subtopics_per_topic=0, questions_per_topic=2,
                                    derived_per_question=0, entities=("Ada Lovelace",),
                                    questions_per_entity=1, specific_per_question=1,
                                    extended_per_question=0),
                  writing=WritingConfig(material_types=("email",), instructions_per_type=1),
                  materials=MaterialsConfig(instructions_per_passage=1))
    manifest = run(cfg).manifest
    assert all(c["holds"] for c in manifest["accounting"]), manifest["accounting"]
    stages = manifest["stages"]
    assert stages["ultrachat_passages"]["rejected"] == {"passage_out_of_range": 1}
    assert stages["ultrachat_openings"]["kept"] == 6 + 2 + 1 + 2  # world, entity, writing, material

    kept, rejected = read_rows(out, "data"), read_rows(out, "rejected")
    failed = read_rows(out, "failed")
    # volcanoes: the user turn of round 2 fails every attempt -> dead letters with the history
    assert sorted(f["stage"] for f in failed) == ["ultrachat_user_turn"] * 2
    for f in failed:
        partial = json.loads(f["partial"])
        assert [m["role"] for m in partial] == ["user", "assistant"]
        assert "volcanoes" in partial[0]["content"] and f["round"] == 2
    # tides: the simulated user answers like the assistant in round 2 -> role_drift
    drift = [r for r in rejected if r["reason"] == "role_drift"]
    assert len(drift) == 2 and {r["topic"] for r in drift} == {"tides"}
    assert all(r["score"] == 1.0 and len(r["messages"]) == 3 for r in drift)
    assert stages["ultrachat_dialogues"]["rejected"] == {"role_drift": 2}
    # everything else: 3 rounds, alternating roles, one model per turn, labels stripped
    topics = _by_topic(kept)
    assert set(topics) == {"rivers", "Ada Lovelace", "email", "materials"}
    assert len(kept) == 2 + 2 + 1 + 2
    for row in kept:
        roles = [m["role"] for m in row["messages"]]
        assert roles == ["user", "assistant"] * 3 and row["rounds"] == 3
        assert row["instruction"] and row["output"] == row["messages"][1]["content"]
        assert row["dialogue_end"] == "rounds_reached" and row["opening_id"]
        assert len(row["turn_generators"]) == 6 == len(row["turn_finish_reasons"])
        assert not any(m["content"].startswith("User:") for m in row["messages"])
    for row in topics["materials"]:
        assert row["input"] in (PASSAGE, PASSAGE.replace("lighthouse", "windmill"))
        assert row["passage_id"] and row["input"] in row["messages"][0]["content"]
    assert {r["sector"] for r in kept} == {"world", "writing", "materials"}

    report = manifest["reports"]["ultrachat"]
    assert report["dialogues"] == len(kept) and report["rounds_per_dialogue"] == 3.0
    assert report["openings_by_sector"] == {"materials": 2, "world": 8, "writing": 1}
    assert report["rejected_by_reason"] == {"role_drift": 2}
    assert 0 < report["distinct_1"] <= 1 and report["mtld"] > 0
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "<h2>Figures</h2>" in page and "<td>distinct 2</td>" in page

    # multi-turn exports, and #InsTag reading the dialogues through messages_field
    path, n = export(out, "sharegpt")
    items = json.loads(path.read_text(encoding="utf-8"))
    assert n == len(kept) and all(len(i["conversations"]) == 6 for i in items)
    assert items[0]["conversations"][0]["from"] == "human"
    path, n = export(out, "openai")
    first = json.loads(path.read_text(encoding="utf-8").splitlines()[0])
    assert [m["role"] for m in first["messages"]] == ["user", "assistant"] * 3

    datasets = pytest.importorskip("datasets")  # the chat shape HF tools expect
    ds = datasets.load_dataset("parquet", data_files=str(out / "data" / "*.parquet"),
                               split="train", cache_dir=str(tmp_path / "hf"))
    assert ds.features["messages"].feature["role"].dtype == "string"
    assert len(ds[0]["messages"]) == 6 and set(ds[0]["messages"][0]) == {"role", "content"}

    tagger = ScriptedTagger()
    tagger.start()
    try:
        tagged = run(RunConfig(
            recipe="instag", output_dir=str(tmp_path / "tags"),
            input=InputConfig(path=str(out / "data" / "*.parquet"), messages_field="messages"),
            generator=_generator(tagger), cache=CacheConfig(enabled=False),
            filters=FiltersConfig(), audit_per_source=0,
            instag=InsTagConfig(sample_size=3, min_tag_count=1, embedding_model="char-trigram",
                                semantic_aggregation=False, association_aggregation=False)))
    finally:
        tagger.stop()
    assert tagged.manifest["stages"]["instag_tag"]["in"] == 3 * len(kept)  # every user turn


def test_rounds_are_drawn_and_a_full_context_ends_a_dialogue(chat_server, tmp_path):
    server = chat_server(token_scale=10)
    out = tmp_path / "out"
    cfg = _config(server, out, min_rounds=2, max_rounds=5, context_tokens=1600,
                  context_margin_tokens=0, world=WorldConfig(
                      meta_topics=("rivers", "tides"), subtopics_per_topic=0,
                      questions_per_topic=4, derived_per_question=0))
    manifest = run(cfg).manifest
    assert all(c["holds"] for c in manifest["accounting"]), manifest["accounting"]
    kept = read_rows(out, "data")
    assert len(kept) == 8
    ends = Counter(r["dialogue_end"] for r in kept)
    assert set(ends) == {"rounds_reached", "context_full"} and ends["context_full"] >= 1
    for row in kept:
        wanted = random.Random(derive_seed(cfg.seed, "rounds", row["opening_id"])).randint(2, 5)
        assert 2 <= wanted <= 5
        if row["dialogue_end"] == "rounds_reached":
            assert row["rounds"] == wanted
        else:  # stopped before a round that would not fit, never mid-round
            assert 1 <= row["rounds"] < wanted
        assert len(row["messages"]) == 2 * row["rounds"]
    # each user turn request is one per round after the first, over the dialogues still live
    user_requests = manifest["stages"]["ultrachat_user_turn"]["in"]
    assert user_requests == sum(r["rounds"] - 1 for r in kept)


def test_an_opening_that_does_not_fit_the_context_is_rejected(chat_server, tmp_path):
    server = chat_server()
    out = tmp_path / "out"
    manifest = run(_config(server, out, context_tokens=200, world=WorldConfig(
        meta_topics=("rivers",), subtopics_per_topic=0, questions_per_topic=2,
        derived_per_question=0))).manifest
    assert manifest["stages"]["ultrachat_dialogues"]["rejected"] == {"context_exceeded": 2}
    assert "ultrachat_assistant_turn" not in manifest["stages"]  # nothing was sent
    rows = read_rows(out, "rejected")
    assert [r["rounds"] for r in rows if r["reason"] == "context_exceeded"] == [0, 0]
