"""A summary of a finished run that a person can read at a glance."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipelines.outputs.info import RecipeInfo
from pipelines.outputs.manifest import failure_ratio
from pipelines.outputs.targets import describe


def _prefix_cache(usage: dict[str, int]) -> str:
    """The stage's prefix-cache hit rate (share of prompt tokens vLLM found cached)."""
    queried = usage.get("prefix_cache_queries", 0)
    if not queried:
        return ""
    return (f"; prefix cache {usage.get('prefix_cache_hits', 0) / queried:.0%} of "
            f"{queried} prompt tokens")


def format_summary(manifest: dict[str, Any], output_dir: Path | str,
                   recipes: Mapping[str, RecipeInfo]) -> str:
    """The end-of-run table; `output_dir` may be a local path or a gs:// prefix. A recipe's
    report (reports/<name>.json) is printed by `recipes[name].report_lines`, when it has one
    (`pipelines.recipes.registry.recipe_info()`)."""
    base = str(output_dir).rstrip("/")
    local = Path(base) if "://" not in base else None
    gen = manifest.get("generator")
    made_by = f"{gen['model']} ({gen['backend']})" if gen else "no generator"
    lines = [f"instructbeam {manifest['recipe']} — {made_by}, "
             f"{manifest['run']['duration_s']} s"]
    w = max([16] + [len(stage) + 2 for stage in manifest["stages"]])  # long stage names
    header = f"  {'stage':<{w}}{'in':>7}{'failed':>8}{'produced':>10}{'kept':>7}{'rejected':>10}"
    lines += ["", header]
    for stage, row in manifest["stages"].items():
        rejected = str(sum(row["rejected"].values())) if "rejected" in row else "-"
        lines.append(f"  {stage:<{w}}{_cell(row, 'in'):>7}{_cell(row, 'failed'):>8}"
                     f"{_cell(row, 'produced'):>10}{_cell(row, 'kept'):>7}{rejected:>10}")
    reasons = _reasons(manifest)
    if reasons:
        lines += ["", "  rejections by reason:"]
        lines += [f"    {stage}/{reason}: {n}" for (stage, reason), n in reasons]
    kept_by = [(stage, path, n) for stage, row in manifest["stages"].items()
               for path, n in row.get("kept_by", {}).items()]
    if kept_by:
        lines += ["", "  kept by path:"]
        lines += [f"    {stage}/{path}: {n}" for stage, path, n in kept_by]
    normalized = [(stage, name, n) for stage, row in manifest["stages"].items()
                  for name, n in row.get("normalized", {}).items()]
    if normalized:
        lines += ["", "  whitespace normalized (records whose field changed):"]
        lines += [f"    {stage}/{name}: {n} of {manifest['stages'][stage].get('produced', 0)}"
                  for stage, name, n in normalized]
    usage = manifest["run"].get("generator_usage", {})
    if usage:
        lines += ["", "  generator calls (cache hits / real calls / failed; retries, timeouts; "
                      "tokens out):"]
        for stage, u in usage.items():
            lines.append(f"    {stage:<{w}}{u.get('cache_hits', 0)} / {u.get('calls', 0)} / "
                         f"{u.get('failed', 0)}; {u.get('retries', 0)} retries, "
                         f"{u.get('timeouts', 0)} timeouts; "
                         f"{u.get('completion_tokens', 0)} tokens"
                         + _prefix_cache(u))
        lines += _paid(usage)
    lines += _report_lines(manifest, recipes)
    for name, report in sorted(manifest.get("reports", {}).items()):
        if isinstance(report, dict) and report.get("summary"):  # e.g. UltraChat's figures
            lines += ["", f"  {name}:"]
            lines += [f"    {label}: {value}" for label, value in report["summary"]]
    broken = [c for c in manifest["accounting"] if not c["holds"]]
    lines += ["", "  accounting: " + ("OK (in = ok + failed, produced = kept + rejected)"
                                      if not broken else f"BROKEN {broken}")]
    lines.append(f"  failure ratio: {failure_ratio(manifest):.3f}")
    if manifest.get("targets"):  # one line per target; a missed one says why
        lines += ["", "  targets:"]
        lines += [f"    {describe(name, t)}" for name, t in manifest["targets"].items()]
    rows = manifest["rows"]
    lines.append("")
    for kind in ("data", *sorted(set(rows) - {"data", "rejected", "failed"}), "rejected",
                 "failed"):
        label = "dataset" if kind == "data" else kind
        lines.append(f"  {label + ':':<14}{base}/{kind}  ({rows.get(kind, 0)} rows)")
    if local is not None and (local / "audit").is_dir():
        lines.append(f"  {'audit:':<14}{base}/audit  (a sample per source to read)")
    if local is not None and (local / "report.html").is_file():
        lines.append(f"  {'report:':<14}{base}/report.html  (open in a browser)")
    lines.append(f"  {'manifest:':<14}{base}/manifest.json")
    return "\n".join(lines)


def _paid(usage: dict[str, dict[str, int]]) -> list[str]:
    """What the run paid for and what the cache gave back, failures it replayed included
    (an earlier run decided them; `--retry-failed` asks them again)."""
    total = {name: sum(u.get(name, 0) for u in usage.values())
             for name in ("calls", "failed", "cache_hits", "failures_replayed")}
    line = (f"  paid: {total['calls']} calls answered, {total['failed']} failed; from the "
            f"cache: {total['cache_hits'] - total['failures_replayed']} answers")
    if total["failures_replayed"]:
        line += (f", {total['failures_replayed']} failures replayed as decided earlier "
                 "(--retry-failed asks them again)")
    return [line]


def _report_lines(manifest: dict[str, Any], recipes: Mapping[str, RecipeInfo]) -> list[str]:
    lines = []
    for name, report in sorted(manifest.get("reports", {}).items()):
        own = recipes[name].report_lines if name in recipes else None
        if own is not None:
            lines += own(report)
    return lines


def _cell(row: dict[str, Any], key: str) -> str:
    return str(row[key]) if key in row else "-"


def _reasons(manifest: dict[str, Any]) -> list[tuple[tuple[str, str], int]]:
    pairs = [((stage, reason), n) for stage, row in manifest["stages"].items()
             for reason, n in row.get("rejected", {}).items()]
    return sorted(pairs, key=lambda kv: -kv[1])
