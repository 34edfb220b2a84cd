"""A target the run did not reach (rounds ran out, too few novel answers) is said in the
manifest, the terminal summary, the dataset card and report.html; the exit status stays 0
unless `--strict-targets` is given. Real recipes (FnApiRunner, HTTP client, Parquet) against
the scripted servers."""

from __future__ import annotations

import html
import json
from collections import Counter
from pathlib import Path

import pytest
import yaml
from ensemble_fakes import EnsembleScriptedServer
from explore_fakes import ExploreScript, ExploreServer
from helpers import read_rows
from instag_fakes import ScriptedTagger

from pipelines.cli import STRICT_TARGETS_EXIT, main
from pipelines.config import RunConfig
from pipelines.outputs.targets import outcome
from pipelines.recipes.ensemble_instruct.config import (
    EnsembleInstructConfig,
    EnsembleOutputOnlyTasksConfig,
    EnsembleTasksConfig,
    ExtraGeneratorConfig,
)
from pipelines.recipes.explore_instruct.config import ExploreExampleConfig, ExploreInstructConfig
from pipelines.recipes.instag.config import InsTagConfig
from pipelines.run import run
from pipelines.settings import (
    CacheConfig,
    FiltersConfig,
    GeneratorConfig,
    InputConfig,
    RulesConfig,
    SamplingConfig,
)

SI = "self_instruct.num_instructions"
TYPE_A = "ensemble_instruct.type_a.num_instructions"
TYPE_B = "ensemble_instruct.type_b.num_instructions"


def _si_config(tmp_path: Path, base_url: str, num_instructions: int) -> str:
    cfg = {"recipe": "self_instruct", "output_dir": str(tmp_path / "out"),
           "cache": {"dir": str(tmp_path / "cache")},
           "generator": {"backend": "openai", "base_url": base_url, "model": "scripted",
                         "timeout_s": 5},
           "self_instruct": {"num_instructions": num_instructions, "max_prompts": 6}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return str(path)


def _outputs(out: Path) -> tuple[dict, str, str]:
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    return (manifest, (out / "README.md").read_text(encoding="utf-8"),
            (out / "report.html").read_text(encoding="utf-8"))


def _card_line(name: str, target: dict) -> str:
    return f"- `{name}`: {outcome(target)}"


def _report_line(name: str, target: dict) -> str:
    return f"<code>{html.escape(name)}</code>: {html.escape(outcome(target))}</li>"


def test_self_instruct_short_of_its_target_says_why_and_strict_exits_non_zero(
        scripted_server, tmp_path, capsys):
    server = scripted_server()
    config = _si_config(tmp_path, server.base_url, num_instructions=200)
    out = tmp_path / "out"
    assert main(["run", config]) == 0  # not strict: a short run is still a finished run
    captured = capsys.readouterr()
    manifest, card, report = _outputs(out)

    stages = manifest["stages"]
    got = stages["novelty"]["kept"]
    assert got == len(read_rows(out, "instructions")) > 0
    candidates = stages["instruction_gen"]["kept"]
    dropped = sum(stages["instruction_gen"]["rejected"].values())
    not_novel = stages["novelty"]["rejected"].get("not_novel", 0)
    assert stages["instruction_gen"]["in"] == 6  # the whole budget
    target = manifest["targets"][SI]
    assert target["wanted"] == 200 and target["got"] == got and target["met"] is False
    assert target["why"].startswith("max_prompts=6 reached after 6 prompts")
    assert target["why"].endswith(f"({candidates} candidate instructions, {not_novel} not "
                                  f"novel; {dropped} dropped by the heuristics)")
    assert list(manifest["targets"]) == [SI]

    line = f"    {SI}: NOT MET, wanted 200, got {got} ({target['why']})"
    assert line in captured.out.splitlines()
    assert captured.err.count("error") == 0
    assert "**Not every target was met**" in card and _card_line(SI, target) in card
    assert '<span class="pill bad">1 target not met</span>' in report
    assert f'<li class="miss">{_report_line(SI, target)}' in report

    strict_out = tmp_path / "strict"
    code = main(["run", config, "--strict-targets", "--output-dir", str(strict_out)])
    captured = capsys.readouterr()
    assert code == STRICT_TARGETS_EXIT != 0
    assert captured.err.strip().splitlines()[-1] == (
        f"error: --strict-targets: not met: {SI} (wanted 200, got {got})")
    assert line in captured.out.splitlines()  # the summary is printed before the error
    strict_manifest, _, _ = _outputs(strict_out)  # the outputs were written all the same
    assert strict_manifest["targets"] == manifest["targets"]


def test_self_instruct_met_target_shows_met_and_strict_exits_zero(scripted_server, tmp_path,
                                                                   capsys):
    server = scripted_server()
    config = _si_config(tmp_path, server.base_url, num_instructions=3)
    assert main(["run", config, "--strict-targets"]) == 0
    captured = capsys.readouterr()
    manifest, card, report = _outputs(tmp_path / "out")
    target = manifest["targets"][SI]
    decided = manifest["stages"]["instruction_gen"]["in"]
    assert target == {"wanted": 3, "got": manifest["stages"]["novelty"]["kept"], "met": True,
                      "why": f"reached after {decided} prompts"}
    assert f"    {SI}: met, wanted 3, got {target['got']} ({target['why']})" in \
        captured.out.splitlines()
    assert "error" not in captured.err
    assert _card_line(SI, target) in card and "Not every target" not in card
    assert '<span class="pill ok">targets met</span>' in report
    assert f'<li class="met">{_report_line(SI, target)}' in report


@pytest.fixture
def ensemble_config(tmp_path):
    made = [EnsembleScriptedServer(persona) for persona in ("twin", "other")]
    for server in made:
        server.start()
    gen, other = made

    def generator(base_url: str) -> GeneratorConfig:
        return GeneratorConfig(backend="openai", base_url=base_url, model="scripted",
                               max_concurrency=4, timeout_s=2.0, max_attempts=2,
                               backoff_s=0.01, max_backoff_s=0.02)

    extras = (ExtraGeneratorConfig(name="twin", generator=generator(gen.base_url), api="chat",
                                   sampling=SamplingConfig(64, 0.0, 0.0, stop=("\n\n",))),
              ExtraGeneratorConfig(name="other", generator=generator(other.base_url),
                                   prompt="few_shot"))
    cfg = RunConfig(
        recipe="ensemble_instruct", output_dir=str(tmp_path / "out"), num_shards=1,
        max_failure_ratio=0.5, generator=generator(gen.base_url),
        cache=CacheConfig(dir=str(tmp_path / "cache")),
        ensemble_instruct=EnsembleInstructConfig(
            type_a=EnsembleTasksConfig(num_instructions=6, max_prompts=12),
            type_b=EnsembleOutputOnlyTasksConfig(num_instructions=50, max_prompts=4),
            extra_generators=extras))
    path = tmp_path / "ensemble.yaml"
    path.write_text(yaml.safe_dump(cfg.to_dict()), encoding="utf-8")
    yield str(path)
    for server in made:
        server.stop()


def test_ensemble_instruct_reports_each_type_target(ensemble_config, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", ensemble_config]) == 0
    summary = capsys.readouterr().out.splitlines()
    manifest, card, report = _outputs(out)
    by_type = Counter(r["instance_type"] for r in read_rows(out, "instructions"))
    targets = manifest["targets"]
    assert list(targets) == [TYPE_A, TYPE_B]

    met, missed = targets[TYPE_A], targets[TYPE_B]
    assert met["met"] is True and met["wanted"] == 6
    assert met["got"] == by_type["input_output"] >= 6
    decided_a = int(met["why"].removeprefix("reached after ").removesuffix(" prompts"))
    assert met["why"] == f"reached after {decided_a} prompts" and decided_a < 12
    assert missed["met"] is False and missed["wanted"] == 50
    assert missed["got"] == by_type["output_only"] > 0
    assert missed["why"].startswith("max_prompts=4 reached after 4 prompts")
    # the two types share stage names; their prompts add up to the stage's requests
    assert manifest["stages"]["instruction_gen"]["in"] == decided_a + 4

    assert f"    {TYPE_A}: met, wanted 6, got {met['got']} ({met['why']})" in summary
    assert f"    {TYPE_B}: NOT MET, wanted 50, got {missed['got']} ({missed['why']})" in summary
    assert _card_line(TYPE_A, met) in card and _card_line(TYPE_B, missed) in card
    assert "**Not every target was met**" in card
    assert '<span class="pill bad">1 target not met</span>' in report
    assert f'<li class="met">{_report_line(TYPE_A, met)}' in report
    assert f'<li class="miss">{_report_line(TYPE_B, missed)}' in report

    strict_out = tmp_path / "strict"
    assert main(["run", ensemble_config, "--strict-targets", "--output-dir",
                 str(strict_out)]) == STRICT_TARGETS_EXIT
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (f"error: --strict-targets: not met: {TYPE_B} (wanted 50, "
                       f"got {missed['got']})")
    assert json.loads((strict_out / "manifest.json").read_text())["targets"] == targets


def test_instag_sample_larger_than_the_pool_is_exhausted(tmp_path):
    queries = ["Write a poem about the sea.", "Multiply 6 by 7.", "GARBLE this one, please.",
               "Translate this email to French.", "Explain how tides work?", "Sort it."]
    path = tmp_path / "queries.jsonl"
    path.write_text("".join(json.dumps({"query": q}) + "\n" for q in queries))
    tagger = ScriptedTagger()
    tagger.start()
    try:
        manifest = run(RunConfig(
            recipe="instag", output_dir=str(tmp_path / "out"), num_shards=1,
            input=InputConfig(path=str(path), instruction_field="query", input_field=None,
                              output_field=None),
            generator=GeneratorConfig(backend="openai", base_url=tagger.base_url,
                                      model="scripted", timeout_s=5.0),
            filters=FiltersConfig(rules=RulesConfig(illegal_words=("tides",),
                                                    require_output=False)),
            instag=InsTagConfig(sample_size=10, min_tag_count=1, embedding_model="char-trigram",
                                semantic_eps=0.5, min_support=2),
            cache=CacheConfig(enabled=False))).manifest
    finally:
        tagger.stop()
    stages = manifest["stages"]
    got = stages["instag_sample"]["kept"]
    assert got == manifest["rows"]["data"] < 10
    assert stages["rules"]["rejected"] == {"illegal_word": 1}
    assert stages["instag_tag"]["rejected"] == {"unparsable_response": 1}  # GARBLE
    assert manifest["targets"] == {"instag.sample_size": {
        "wanted": 10, "got": got, "met": False,
        "why": f"pool exhausted: only {got} taggable queries reached Cf-D (6 input rows; "
               "1 dropped by the filters, 1 with unusable tag answers)"}}


def test_explore_sample_reports_its_target(tmp_path):
    server = ExploreServer(ExploreScript())
    server.start()
    root = ExploreExampleConfig("Say the same thing in other words.", "The bus was late.",
                                "Again the bus came late.")
    try:
        manifest = run(RunConfig(
            recipe="explore_instruct", output_dir=str(tmp_path / "out"), num_shards=1,
            generator=GeneratorConfig(backend="openai", base_url=server.base_url,
                                      model="scripted", timeout_s=5.0),
            cache=CacheConfig(enabled=False),
            explore_instruct=ExploreInstructConfig(
                root_task="Rewriting", root_examples=(root,), max_depth=1, extend_nums=(2,),
                enrich_nums=(0, 4), max_enrich_rounds=1, sample_size=500, api="chat"))
        ).manifest
    finally:
        server.stop()
    sample = manifest["stages"]["explore_sample"]
    target = manifest["targets"]["explore_instruct.sample_size"]
    assert target["wanted"] == 500 and target["got"] == sample["kept"] < 500
    assert not target["met"]
    assert target["why"].startswith(f"pool exhausted: only {sample['produced']} examples "
                                    "eligible for the sample")
