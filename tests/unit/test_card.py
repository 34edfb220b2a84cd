"""The dataset card renders for every recipe (its demo config where one ships), with Hugging
Face front matter, and names the licences of the models and seed data it was made from."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

import pytest
import yaml

from pipelines.config import RunConfig, load_config
from pipelines.generators.embedded import EMBEDDED_MODELS
from pipelines.outputs.card import SELF_INSTRUCT_SEEDS, front_matter, seed_licence, write_card
from pipelines.recipes.registry import REGISTRY
from pipelines.settings import InputConfig

ROOT = Path(__file__).resolve().parents[2]
RECIPES = typing.get_args(typing.get_type_hints(RunConfig)["recipe"])


def _config(recipe: str, tmp_path: Path) -> RunConfig:
    demo = ROOT / "configs" / f"{recipe}_demo.yaml"
    if demo.exists():
        return load_config(demo, {"output_dir": str(tmp_path / "out")})
    base = load_config(ROOT / "configs" / "self_instruct_demo.yaml")
    return dataclasses.replace(base, recipe=recipe, output_dir=str(tmp_path / "out"),
                               input=InputConfig(path=str(tmp_path / "rows.jsonl")))


def _manifest(cfg: RunConfig) -> dict:
    gen = cfg.generator
    model = EMBEDDED_MODELS[gen.model].hf_model_id if gen.backend == "embedded" else gen.model
    return {
        "schema_version": "1.0", "recipe": cfg.recipe, "config": cfg.to_dict(),
        "generator": None if cfg.recipe == "filter" else {
            "model": model, "revision": "pkg==1", "served_name": gen.model,
            "backend": gen.backend},
        "stages": {"rules": {"produced": 5, "kept": 3,
                             "rejected": {"empty_output": 1, "too_long": 1}}},
        "rows": {"data": 3, "failed": 0, "rejected": 2},
        "accounting": [{"stage": "rules", "holds": True}],
    }


def _front_matter(text: str) -> dict:
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n", 2)[1])


@pytest.mark.parametrize("recipe", RECIPES)
def test_every_recipe_gets_a_card_that_points_at_the_data(recipe, tmp_path):
    cfg = _config(recipe, tmp_path)
    out = tmp_path / "staging"
    (out / "data").mkdir(parents=True)
    text = Path(write_card(out, _manifest(cfg), REGISTRY[recipe].info)).read_text(
        encoding="utf-8")
    matter = _front_matter(text)
    default = [c for c in matter["configs"] if c.get("default")]
    assert default == [{"config_name": "default", "default": True,
                        "data_files": [{"split": "train", "path": "data/*.parquet"}]}]
    assert {c["config_name"] for c in matter["configs"]} == {"default", "rejected"}  # 0 failed
    assert matter["task_categories"] == ["text-generation"] and matter["license"]
    assert "| rules | - | - | - | 5 | 3 | 2 |" in text
    assert "| rules | empty_output | 1 |" in text
    assert "## Licence" in text and "seed data:" in text
    for model, licence in (("smollm2-135m", "Apache-2.0"), ("gemma3-270m", "Gemma Terms of Use")):
        if recipe != "filter" and f"'{model}'" in str(cfg.to_dict()):
            assert f"`{model}`: {licence}" in text


def test_licence_id_only_when_every_source_agrees(tmp_path):
    self_instruct, ensemble = REGISTRY["self_instruct"].info, REGISTRY["ensemble_instruct"].info
    single = _manifest(load_config(ROOT / "configs" / "self_instruct_demo.yaml"))
    assert front_matter(single, self_instruct)["license"] == "apache-2.0"  # SmolLM2, built-in
    mixed = _manifest(load_config(ROOT / "configs" / "ensemble_instruct_demo.yaml"))
    assert front_matter(mixed, ensemble)["license"] == "other"  # SmolLM2 and Gemma 3
    foreign = single | {"config": single["config"] | {"seed_tasks": "x/seed_tasks.jsonl"}}
    assert front_matter(foreign, self_instruct)["license"] == "other"
    assert SELF_INSTRUCT_SEEDS in seed_licence(foreign["config"], self_instruct)
    assert "check" in SELF_INSTRUCT_SEEDS


def test_a_gs_output_is_written_through_beam_filesystems(tmp_path, monkeypatch):
    """Dataflow runs write the card beside gs:// shards; here gs:// maps onto a local dir."""
    from apache_beam.io.filesystems import FileSystems

    local = tmp_path / "bucket"
    (local / "data").mkdir(parents=True)

    def to_local(path: str) -> str:
        return path.replace("gs://b/run", str(local))

    for name in ("match", "open", "create"):
        real = getattr(FileSystems, name)
        monkeypatch.setattr(FileSystems, name, staticmethod(
            lambda p, *a, _real=real, **k: _real([to_local(x) for x in p], *a, **k)
            if isinstance(p, list) else _real(to_local(p), *a, **k)))
    manifest = _manifest(load_config(ROOT / "configs" / "self_instruct_demo.yaml"))
    assert write_card("gs://b/run", manifest, REGISTRY["self_instruct"].info) == \
        "gs://b/run/README.md"
    assert _front_matter((local / "README.md").read_text())["license"] == "apache-2.0"
