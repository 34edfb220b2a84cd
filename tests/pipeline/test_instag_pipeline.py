"""#InsTag through the real pipeline (FnApiRunner, HTTP client, Parquet) with a scripted tagger:
the Beam transforms must decide exactly what the pure core decides on the same tags."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from helpers import read_rows, shard_digests
from instag_fakes import ScriptedTagger

from bench.cfd_reference import cfd_literal
from filters.instag import apply_map
from filters.instag_normalize import normalize_tag_sets
from filters.tag_embeddings import trigram_embed
from pipelines.config import RunConfig
from pipelines.outputs.report import format_summary
from pipelines.recipes.instag.config import InsTagConfig
from pipelines.recipes.instag.steps import normalize_params
from pipelines.recipes.registry import recipe_info
from pipelines.run import run
from pipelines.settings import CacheConfig, FiltersConfig, GeneratorConfig, InputConfig, RulesConfig

QUERIES = [
    "Write a poem about the sea.", "Write a haiku about snow.", "Write a python function "
    "that sums a list.", "Explain this python function.", "Translate 'good night' to French.",
    "Translate this email to French.", "What is the sum of 3 and 4?", "Multiply 6 by 7.",
    "Write an email to my landlord.", "Explain how tides work?", "List three red fruits.",
    "Write a poem and translate it to French.", "GARBLE this one, please.",
    "List the python keywords and explain them.", "Write a haiku, then explain it.",
    "Is the sum of two odd numbers even?", "Sort the numbers.", "Write a formal email.",
    "Multiply the matrix by two and explain.", "List five poem forms.",
]


@pytest.fixture
def tagger():
    server = ScriptedTagger()
    server.start()
    yield server
    server.stop()


def _config(tmp_path, base_url: str, rows: list[dict], *, out="out", messages=False,
            **instag) -> RunConfig:
    path = tmp_path / "queries.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    params = dict(sample_size=6, min_tag_count=2, embedding_model="char-trigram",
                  semantic_eps=0.5, min_support=2, top_tags=5) | instag
    return RunConfig(
        recipe="instag", output_dir=str(tmp_path / out),
        input=InputConfig(path=str(path), instruction_field="query", input_field=None,
                          output_field=None, messages_field="messages" if messages else None),
        generator=GeneratorConfig(backend="openai", base_url=base_url, model="scripted",
                                  max_concurrency=4, timeout_s=5.0, max_attempts=2,
                                  backoff_s=0.01, max_backoff_s=0.02),
        filters=FiltersConfig(rules=RulesConfig(enabled=False)),
        instag=InsTagConfig(**params),  # type: ignore[arg-type]
        cache=CacheConfig(enabled=False), num_shards=2, audit_per_source=0)


def test_tag_normalize_sample_matches_the_pure_core(tagger, tmp_path):
    cfg = _config(tmp_path, tagger.base_url, [{"query": q} for q in QUERIES])
    result = run(cfg)
    out, manifest = result.output_dir, result.manifest
    assert all(c["holds"] for c in manifest["accounting"]), manifest["accounting"]
    stages = manifest["stages"]
    assert stages["instag_tag"]["in"] == len(QUERIES) == stages["instag_tag"]["produced"]
    assert stages["instag_tag"]["rejected"] == {"unparsable_response": 1}  # GARBLE

    # Structured output was asked for, with the bounded schema.
    body = tagger.bodies[0]
    assert body["structured_outputs"]["json"]["maxItems"] == cfg.instag.max_tags
    assert "messages" in body and body["temperature"] == 0.0

    kept = read_rows(out, "data")
    rejected = read_rows(out, "rejected")
    garbled = [r for r in rejected if r["reason"] == "unparsable_response"]
    assert garbled[0]["tags_raw"] and json.loads(garbled[0]["tags_raw"])[0].startswith("tags:")
    pool = kept + [r for r in rejected if r["filter_stage"] == "instag_sample"]
    assert len(pool) == len(QUERIES) - 1 == stages["instag_normalize"]["kept"]

    # Normalization: the Beam plan equals the in-memory one on the same raw tags.
    pool.sort(key=lambda r: r["position"])
    raw = [r["tags_open"] for r in pool]
    plan = normalize_tag_sets(raw, normalize_params(cfg.instag), trigram_embed)
    assert [r["tags"] for r in pool] == [list(apply_map(plan.mapping, t)) for t in raw]
    assert all(r["tag_count"] == len(r["tags"]) for r in pool)
    assert not any("topic" in t for r in pool for t in r["tags"])  # rare tags dropped

    # Cf-D: the kept rows are Algorithm 1's picks, with their pass and rank.
    expected = cfd_literal([r["tags"] for r in pool], cfg.instag.sample_size)
    got = sorted((r["cfd_rank"], r["position"], r["cfd_pass"]) for r in kept)
    assert [(pos, p) for _, pos, p in got] == [(pool[i]["position"], p) for i, p in expected]
    reasons = {r["reason"] for r in rejected if r["filter_stage"] == "instag_sample"}
    assert reasons <= {"not_sampled", "no_tags"}

    report = manifest["reports"]["instag"]
    assert [s["step"] for s in report["normalization"]] == [
        "frequency", "rule", "semantic", "association"]
    assert [s.as_dict() for s in plan.steps] == report["normalization"]
    assert all(s["removed"] + s["merged"] > 0 for s in report["normalization"])  # each acts
    assert report["pool"]["queries"] == len(pool) and report["subset"]["queries"] == len(kept)
    vocab = {t for r in pool for t in r["tags"]}
    assert report["pool"]["tags"] == len(vocab)
    assert report["subset"]["coverage"] == round(
        len({t for r in kept for t in r["tags"]}) / len(vocab), 4)
    assert report["subset"]["mean_tags"] >= report["pool"]["mean_tags"]
    summary = format_summary(manifest, out, recipe_info())
    assert "#InsTag pool" in summary and "coverage" in summary and "most frequent" in summary
    assert (out / "reports" / "instag.json").is_file()

    second = run(_config(tmp_path, tagger.base_url, [{"query": q} for q in QUERIES],
                         out="again"))
    assert shard_digests(out) == shard_digests(second.output_dir)


def test_multi_turn_is_tagged_per_user_turn_and_united(tagger, tmp_path):
    conversations = [
        [("human", "Write a poem about rain."), ("gpt", "Rain..."),
         ("human", "Now translate it to French."), ("gpt", "Pluie...")],
        [("user", "Multiply 3 by 4."), ("assistant", "12"), ("user", "Explain why?")],
        [("system", "Be brief."), ("user", "List two python keywords.")],
    ]
    rows = [{"messages": [({"from": r, "value": t} if r in ("human", "gpt") else
                          {"role": r, "content": t}) for r, t in conv]}
            for conv in conversations]
    cfg = _config(tmp_path, tagger.base_url, rows, messages=True, sample_size=None,
                  min_tag_count=1, semantic_aggregation=False, association_aggregation=False)
    result = run(cfg)
    assert result.manifest["stages"]["instag_tag"]["in"] == 5  # user turns
    assert all(c["holds"] for c in result.manifest["accounting"])
    data = sorted(read_rows(result.output_dir, "data"), key=lambda r: r["position"])
    assert len(data) == 3 and result.manifest["reports"]["instag"]["subset"] is None
    first = data[0]
    assert first["instruction"] == "Write a poem about rain." and first["output"] == "Rain..."
    assert json.loads(first["conversation"])[2] == {"role": "user",
                                                    "content": "Now translate it to French."}
    assert {"Poetry writing", "translation"} <= set(first["tags_open"])  # both turns
    assert len(json.loads(first["tags_raw"])) == 2
    assert "question answering" in data[1]["tags_open"]  # from the second turn only


def test_a_failed_turn_rejects_its_conversation(tmp_path):
    from fakes import FaultPlan

    server = ScriptedTagger(faults=FaultPlan(p_500=1.0, max_faults=2))
    server.start()
    try:
        rows = [{"query": q} for q in QUERIES[:6]]
        cfg = replace(_config(tmp_path, server.base_url, rows, sample_size=3),
                      max_failure_ratio=1.0,
                      generator=GeneratorConfig(backend="openai", base_url=server.base_url,
                                                model="scripted", max_attempts=1))
        result = run(cfg)
    finally:
        server.stop()
    stages = result.manifest["stages"]
    assert stages["instag_tag"]["failed"] == 2 and stages["instag_tag"]["ok"] == 4
    assert stages["instag_tag"]["rejected"] == {"task_failed_upstream": 2}
    assert all(c["holds"] for c in result.manifest["accounting"])
    assert len(read_rows(result.output_dir, "failed")) == 2
