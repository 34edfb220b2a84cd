"""A finished run's audit sample on disk, without running anything: for the review tests."""

from __future__ import annotations

import json
from pathlib import Path

HOSTILE = '</script><img src=x onerror="window.pwned=1"><script>window.pwned=2</script> & \u2028'


def audit_row(i: int, stage: str = "instance_gen", **extra: object) -> dict[str, object]:
    return {"id": f"r{i:03d}", "instruction": f"Instruction {i}", "input": "" if i % 2 else
            f"input {i}", "output": f"Output {i}", "stage": stage, "round": 1,
            "generator": "scripted"} | extra


def write_audit(run_dir: Path, sources: dict[str, list[dict[str, object]]]) -> Path:
    """`run_dir/audit/<source>.jsonl` per source, and a manifest.json so the CLI accepts it."""
    (run_dir / "audit").mkdir(parents=True, exist_ok=True)
    for source, rows in sources.items():
        (run_dir / "audit" / f"{source}.jsonl").write_text(
            "".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    (run_dir / "manifest.json").write_text("{}", encoding="utf-8")
    return run_dir


def small_run(run_dir: Path) -> Path:
    """Two sources, five rows, one of them hostile text with a score."""
    return write_audit(run_dir, {
        "self_instruct": [audit_row(1), audit_row(2), audit_row(3, stage="instruction_gen")],
        "seed": [audit_row(4, instruction=HOSTILE, output=HOSTILE,
                           scores={"llm_judge": 4.5}), audit_row(5)],
    })
