"""Ensemble-Instruct configuration: defaults, YAML loading, errors that name file:line."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import ROOT

from pipelines.config import load_config
from pipelines.errors import InputError
from pipelines.generators.backends import GeneratorIdentity
from pipelines.recipes.ensemble_instruct.build import model_identifier
from pipelines.recipes.ensemble_instruct.config import EnsembleInstructConfig, ExtraGeneratorConfig
from pipelines.settings import GeneratorConfig, SamplingConfig

EXTRAS = """  extra_generators:
    - name: first
      generator: {backend: openai, base_url: "http://127.0.0.1:1/v1", model: a}
    - name: second
      generator: {backend: openai, base_url: "http://127.0.0.1:2/v1", model: b}
"""


def _write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text("recipe: ensemble_instruct\noutput_dir: out\nensemble_instruct:\n" + body,
                    encoding="utf-8")
    return path


def test_defaults_are_the_papers():
    ei = EnsembleInstructConfig()
    assert (ei.type_a.num_prompt_instructions, ei.type_a.num_machine_demos) == (24, 4)
    assert (ei.type_b.num_prompt_instructions, ei.type_b.num_machine_demos) == (10, 2)
    assert ei.agree_rule == "agreed_output" and ei.min_pairwise_rouge == 0.01
    assert ei.single_line and not ei.eos_suffix and ei.end_marker == " |EoS|"
    assert ei.instruction_sampling.as_request()["min_tokens"] == 15
    assert ei.instruction_sampling.stop == ("|EoS|",)
    extra = ExtraGeneratorConfig("x").sampling.as_request()
    assert extra["temperature"] == 0.0 and extra["min_tokens"] == 1
    assert "min_tokens" not in SamplingConfig().as_request()  # old cache keys unchanged


def test_type_b_overrides_keep_type_b_defaults(tmp_path):
    cfg = load_config(_write(tmp_path, "  type_b: {num_machine_demos: 4}\n" + EXTRAS))
    tb = cfg.ensemble_instruct.type_b
    assert (tb.num_prompt_instructions, tb.num_machine_demos) == (10, 4)  # the code's 6 + 4


def test_the_demo_config_loads_and_its_greedy_twin_shares_the_generator():
    cfg = load_config(ROOT / "configs" / "ensemble_instruct_demo.yaml")
    gemma, twin = cfg.ensemble_instruct.extra_generators
    assert twin.generator == cfg.generator and gemma.generator != cfg.generator
    ident = GeneratorIdentity("m", "r", "smollm2-135m")
    assert model_identifier(twin.generator, ident, cfg.generator) == \
        model_identifier(cfg.generator, ident, cfg.generator)
    assert model_identifier(gemma.generator, ident, cfg.generator) != \
        model_identifier(cfg.generator, ident, cfg.generator)


@pytest.mark.parametrize(("body", "where"), [
    ("  agree_rule: majority\n" + EXTRAS, ":4: field 'ensemble_instruct.agree_rule'"),
    ("  single_line: true\n", ":3: field 'ensemble_instruct'"),  # fewer than 2 extras
    ("  eos_suffix: true\n  end_marker: ''\n" + EXTRAS, "field 'ensemble_instruct.eos_suffix'"),
    (EXTRAS.replace("name: second", "name: first"), "'ensemble_instruct.extra_generators'"),
    (EXTRAS.replace("name: second", "name: Bad Name"), "extra_generators.name"),
    ("  type_a: {num_machine_demos: 24}\n" + EXTRAS, "type_a.num_machine_demos"),
])
def test_errors_name_the_field(tmp_path, body, where):
    with pytest.raises(InputError, match="c.yaml") as info:
        load_config(_write(tmp_path, body))
    assert where in str(info.value)


def test_extra_generators_need_distinct_names_only():
    gen = GeneratorConfig(backend="openai", base_url="http://x/v1", model="m")
    same = (ExtraGeneratorConfig("a", gen), ExtraGeneratorConfig("b", gen))
    assert EnsembleInstructConfig(extra_generators=same).extra_generators == same
