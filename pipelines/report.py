"""A summary of a finished run that a person can read at a glance."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipelines.manifest import failure_ratio


def format_summary(manifest: dict[str, Any], output_dir: Path) -> str:
    gen = manifest.get("generator")
    made_by = f"{gen['model']} ({gen['backend']})" if gen else "no generator"
    lines = [f"instructbeam {manifest['recipe']} — {made_by}, "
             f"{manifest['run']['duration_s']} s"]
    header = f"  {'stage':<16}{'in':>7}{'failed':>8}{'produced':>10}{'kept':>7}{'rejected':>10}"
    lines += ["", header]
    for stage, row in manifest["stages"].items():
        rejected = str(sum(row["rejected"].values())) if "rejected" in row else "-"
        lines.append(f"  {stage:<16}{_cell(row, 'in'):>7}{_cell(row, 'failed'):>8}"
                     f"{_cell(row, 'produced'):>10}{_cell(row, 'kept'):>7}{rejected:>10}")
    reasons = _reasons(manifest)
    if reasons:
        lines += ["", "  rejections by reason:"]
        lines += [f"    {stage}/{reason}: {n}" for (stage, reason), n in reasons]
    usage = manifest["run"].get("generator_usage", {})
    if usage:
        lines += ["", "  generator calls (cache hits / real calls / failed, tokens out):"]
        for stage, u in usage.items():
            lines.append(f"    {stage:<16}{u.get('cache_hits', 0)} / {u.get('calls', 0)} / "
                         f"{u.get('failed', 0)}, {u.get('completion_tokens', 0)} tokens")
    broken = [c for c in manifest["accounting"] if not c["holds"]]
    lines += ["", "  accounting: " + ("OK (in = ok + failed, produced = kept + rejected)"
                                      if not broken else f"BROKEN {broken}")]
    lines.append(f"  failure ratio: {failure_ratio(manifest):.3f}")
    rows = manifest["rows"]
    lines.append("")
    for kind in ("data", *sorted(set(rows) - {"data", "rejected", "failed"}), "rejected",
                 "failed"):
        label = "dataset" if kind == "data" else kind
        lines.append(f"  {label + ':':<14}{output_dir / kind}  ({rows.get(kind, 0)} rows)")
    if (output_dir / "audit").is_dir():
        lines.append(f"  {'audit:':<14}{output_dir / 'audit'}  (a sample per source to read)")
    lines.append(f"  {'manifest:':<14}{output_dir / 'manifest.json'}")
    return "\n".join(lines)


def _cell(row: dict[str, Any], key: str) -> str:
    return str(row[key]) if key in row else "-"


def _reasons(manifest: dict[str, Any]) -> list[tuple[tuple[str, str], int]]:
    pairs = [((stage, reason), n) for stage, row in manifest["stages"].items()
             for reason, n in row.get("rejected", {}).items()]
    return sorted(pairs, key=lambda kv: -kv[1])
