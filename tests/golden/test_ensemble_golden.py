"""Ensemble-Instruct fidelity against the released run (`IBM/ensemble-instruct` `sample/`).

`../shared/golden/ensemble_instruct` holds that run: the machine instructions of both types
(with the stored `most_similar` and `avg_similarity_score`), the raw instances, the parsed
samples, the two extra models' outputs (flan-t5-xxl, flan-ul2) and the ensembled file. We
parse the raw instances, ensemble the shipped outputs, and recompute the instruction scores,
and compare row by row with the shipped files.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from filters.ensemble import ConsensusPath, consensus
from filters.ensemble_instructions import (
    EOS_SUFFIX,
    paper_rules,
    parse_instruction_response,
    similarity_report,
)
from filters.ensemble_parse import parse_raw_instances

TYPES = {"io": "input_output", "o": "output_only"}


def _rows(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


@pytest.fixture(scope="module")
def ei(golden_dir: Path) -> Path:
    path = golden_dir / "ensemble_instruct"
    if not path.is_dir():
        pytest.fail(f"golden data missing: {path}")
    return path


@pytest.fixture(scope="module")
def seeds(golden_dir: Path) -> list[dict]:
    return _rows(golden_dir / "self_instruct" / "seed_tasks.jsonl")


def _parse_file(path: Path) -> list[dict]:
    kept = []
    for row in _rows(path):
        for sample in parse_raw_instances(row["instruction"], row["raw_instances"]):
            if sample.verdict.keep:
                kept.append({"instruction": sample.instruction, "input": sample.input,
                             "output": sample.output})
    return kept


@pytest.mark.parametrize("prefix", ["io", "o"])
def test_valid_format_parser_reproduces_the_shipped_samples(ei: Path, prefix: str):
    got = _parse_file(ei / f"openei.{prefix}_instances.jsonl")
    want = _rows(ei / f"openei.{prefix}_samples.jsonl")
    assert len(got) == len(want) == {"io": 72, "o": 81}[prefix]
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        assert g == w, f"row {i}"


def test_type_a_then_type_b_is_the_samples_file(ei: Path):
    both = _parse_file(ei / "openei.io_instances.jsonl") + _parse_file(
        ei / "openei.o_instances.jsonl")
    assert both == _rows(ei / "openei.samples.jsonl")


def test_parser_keeps_block_kinds_and_never_harvests_in_the_sample(ei: Path):
    for prefix, kind in TYPES.items():
        for row in _rows(ei / f"openei.{prefix}_instances.jsonl"):
            samples = parse_raw_instances(row["instruction"], row["raw_instances"])
            assert not any(s.harvested for s in samples)
            kept = [s for s in samples if s.verdict.keep]
            assert all(s.kind == kind for s in kept)


def _ensemble(ei: Path, rule: str) -> tuple[list[dict], list[ConsensusPath]]:
    samples = _rows(ei / "openei.samples.jsonl")
    t5 = _rows(ei / "openei.flan-t5-xxl_output.jsonl")
    ul2 = _rows(ei / "openei.flan-ul2_output.jsonl")
    assert len(samples) == len(t5) == len(ul2) == 153
    kept, paths = [], []
    for sample, a, b in zip(samples, t5, ul2, strict=True):
        assert a["instruction"] == b["instruction"] == sample["instruction"]
        decision = consensus([sample["output"], a["output"], b["output"]], agree_rule=rule)
        paths.append(decision.path)
        if decision.keep:
            kept.append({"instruction": sample["instruction"].strip(),
                         "input": sample["input"].strip(), "output": decision.output})
    return kept, paths


def test_ensembling_with_the_original_rule_reproduces_the_shipped_file(ei: Path):
    kept, paths = _ensemble(ei, "generator_output")
    want = _rows(ei / "openei.ensemble")
    assert len(kept) == len(want) == 105
    for i, (g, w) in enumerate(zip(kept, want, strict=True)):
        assert g == w, f"row {i}"
    counts = {p: paths.count(p) for p in ConsensusPath}
    assert sum(counts.values()) == 153
    assert counts[ConsensusPath.DISAGREEMENT] == 153 - 105
    assert counts[ConsensusPath.AGREED_OTHERS] == 24


def test_the_current_rule_differs_only_where_the_extra_models_agree(ei: Path):
    old, old_paths = _ensemble(ei, "generator_output")
    new, new_paths = _ensemble(ei, "agreed_output")
    assert old_paths == new_paths
    assert len(new) == len(old)
    changed = [i for i, (a, b) in enumerate(zip(old, new, strict=True)) if a != b]
    agreed = [i for i, p in enumerate([p for p in old_paths if p != "disagreement"])
              if p == ConsensusPath.AGREED_OTHERS]
    assert changed and set(changed) <= set(agreed)
    assert len(changed) == 24  # in every agreed case the extras' output differs from the LM's


def _machine_and_seeds(ei: Path, seeds: list[dict], prefix: str):
    rows = _rows(ei / f"openei.{prefix}_instructions.jsonl")
    type_a = prefix == "io"
    pool_seeds = [t["instruction"] for t in seeds
                  if (t["instances"][0]["input"] != "") == type_a]
    return rows, pool_seeds


@pytest.mark.parametrize("prefix", ["io", "o"])
def test_similarity_scores_are_reproduced_exactly_with_the_eos_suffix(ei, seeds, prefix):
    rows, pool_seeds = _machine_and_seeds(ei, seeds, prefix)
    assert len(pool_seeds) == {"io": 125, "o": 50}[prefix]
    assert len(rows) == {"io": 101, "o": 102}[prefix]
    machine: list[str] = []
    for i, row in enumerate(rows):
        text = row["instruction"]
        assert text.endswith(EOS_SUFFIX)
        avg, most = similarity_report(text, pool_seeds + machine)
        assert avg == row["avg_similarity_score"], f"row {i}"
        assert list(most.items()) == list(row["most_similar"].items()), f"row {i}"
        assert max(most.values()) <= 0.7
        machine.append(text)


def test_without_the_suffix_the_stored_averages_are_not_reproduced(ei, seeds):
    rows, pool_seeds = _machine_and_seeds(ei, seeds, "o")
    clean = [r["instruction"].replace(EOS_SUFFIX, "") for r in rows]
    differ = sum(similarity_report(c, pool_seeds + clean[:i])[0] != r["avg_similarity_score"]
                 for i, (c, r) in enumerate(zip(clean, rows, strict=True)))
    assert differ > len(rows) // 2


@pytest.mark.parametrize("prefix", ["io", "o"])
def test_every_stored_instruction_is_an_accepted_piece_of_its_response(ei, seeds, prefix):
    rows, _ = _machine_and_seeds(ei, seeds, prefix)
    rules = paper_rules()
    two_piece = 0
    for row in rows:
        parsed = parse_instruction_response(row["metadata"]["response"], rules,
                                            eos_suffix=True)
        accepted = [p.text for p in parsed if p.verdict.keep]
        assert row["instruction"] in accepted
        clean = parse_instruction_response(row["metadata"]["response"], rules)
        assert row["instruction"].replace(EOS_SUFFIX, "") in [p.text for p in clean]
        two_piece += len(parsed) > 1
    assert two_piece > 0  # min_new_tokens pushed the model past a first |EoS|


@pytest.mark.parametrize(("prefix", "k", "machine_max"), [("io", 24, 4), ("o", 10, 4)])
def test_released_prompts_use_the_codes_in_context_mix(ei, seeds, prefix, k, machine_max):
    rows, _ = _machine_and_seeds(ei, seeds, prefix)
    mixes = set()
    for row in rows:
        prompt = row["metadata"]["prompt"]
        demos = re.findall(r"^\d+\. (.*)$", prompt, flags=re.M)
        assert len(demos) == k and prompt.endswith(f"\n{k + 1}.")
        assert all(d.endswith(EOS_SUFFIX) for d in demos)
        machine = sum(d.endswith(EOS_SUFFIX * 2) for d in demos)  # stored " |EoS|" + marker
        mixes.add((k - machine, machine))
    assert mixes == {(k, 0), (k - machine_max, machine_max)}
