"""What Self-Instruct sends: stop strings that follow the demo count, the classification token
budget, and the newest version of every prompt."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.config import RunConfig, load_config
from pipelines.errors import InputError
from pipelines.recipes.self_instruct import steps
from pipelines.recipes.self_instruct.config import SelfInstructConfig
from pipelines.recipes.self_instruct.seeds import SeedTask
from pipelines.settings import SamplingConfig
from prompts import load_prompt
from schemas import InstructionRecord

SEEDS = [SeedTask(f"s{k}", f"Seed task number {k} for the prompt.", (("", "x"),), False)
         for k in range(20)]
DEMO_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "self_instruct_demo.yaml"


def _config(**si: object) -> RunConfig:
    return RunConfig(recipe="self_instruct", output_dir="out",
                     self_instruct=SelfInstructConfig(**si))  # type: ignore[arg-type]


def _requests(cfg: RunConfig) -> list:
    seed_texts = [s.instruction for s in SEEDS]
    return [steps.instruction_request(0, i, [], seed_texts, cfg) for i in range(5)]


def _stops(cfg: RunConfig) -> list[list[str]]:
    return [req.sampling["stop"] for req in _requests(cfg)]


def test_default_stops_are_the_papers() -> None:
    assert _stops(_config()) == [["\n\n", "\n16", "16.", "16 ."]] * 5


@pytest.mark.parametrize(("demos", "item"), [(4, 12), (8, 16), (12, 20)])
def test_item_stops_follow_num_prompt_instructions(demos: int, item: int) -> None:
    """The prompt leaves item demos+1 open; the paper allows 7 new items (9-15 for 8 demos)."""
    cfg = _config(num_prompt_instructions=demos, num_machine_demos=1)
    requests = _requests(cfg)
    assert all(req.prompt.endswith(f"\n{demos + 1}.") for req in requests)
    assert _stops(cfg) == [["\n\n", f"\n{item}", f"{item}.", f"{item} ."]] * 5


def test_configured_stops_are_kept_and_item_stops_not_repeated() -> None:
    sampling = SamplingConfig(1024, 0.7, 0.5, 2.0, 0.0, ("\n\n", "\n16", "###"))
    cfg = _config(instruction_sampling=sampling)
    assert _stops(cfg)[0] == ["\n\n", "\n16", "###", "16.", "16 ."]


def test_demo_config_sends_the_papers_stops() -> None:
    cfg = load_config(DEMO_CONFIG)
    assert _stops(cfg)[0] == ["\n\n", "\n16", "16.", "16 ."]
    fewer = load_config(DEMO_CONFIG, {"self_instruct.num_prompt_instructions": 6})
    assert _stops(fewer)[0] == ["\n\n", "\n14", "14.", "14 ."]


def _task(is_classification: bool) -> InstructionRecord:
    return InstructionRecord(id="t1", content_hash="h", recipe="self_instruct",
                             stage="instruction_gen", round=1,
                             instruction="Tell whether the number is even or odd.",
                             is_classification=is_classification)


def test_classification_tasks_get_their_own_token_budget() -> None:
    cfg = _config()
    clf = steps.instance_request(_task(True), cfg)
    gen = steps.instance_request(_task(False), cfg)
    assert (clf.sampling["max_tokens"], gen.sampling["max_tokens"]) == (300, 350)
    assert {k: v for k, v in clf.sampling.items() if k != "max_tokens"} == \
        {k: v for k, v in gen.sampling.items() if k != "max_tokens"}
    custom = _config(clf_instance_max_tokens=120)
    assert steps.instance_request(_task(True), custom).sampling["max_tokens"] == 120


def test_clf_instance_max_tokens_is_validated(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("recipe: self_instruct\noutput_dir: o\nself_instruct:\n"
                    "  clf_instance_max_tokens: 0\n")
    with pytest.raises(InputError, match=r":4: field 'self_instruct.clf_instance_max_tokens'"):
        load_config(path)


@pytest.mark.parametrize("key", [steps.PROMPT_INSTRUCTIONS, steps.PROMPT_CLF,
                                 steps.PROMPT_OUTPUT_FIRST, steps.PROMPT_INPUT_FIRST])
def test_pipeline_uses_the_newest_version_of_each_prompt(key: tuple[str, str, int]) -> None:
    algorithm, name, version = key
    load_prompt(algorithm, name, version)
    with pytest.raises(FileNotFoundError):
        load_prompt(algorithm, name, version + 1)


def test_routing_picks_output_first_for_classification_only() -> None:
    cfg = _config()
    clf = steps.instance_request(_task(True), cfg)
    gen = steps.instance_request(_task(False), cfg)
    assert clf.prompt_ref == "self_instruct/instance_output_first@v2"
    assert gen.prompt_ref == "self_instruct/instance_input_first@v1"
