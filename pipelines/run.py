"""Run one config end to end: validate, build the graph, run it, promote the output, report.

Nothing touches the output location until the inputs validate and the location may be
replaced (pipelines/outputs/output_dir.py: only an earlier complete run of this tool whose
files are as it wrote them, or anything with `overwrite`; never the current or home
directory, a root, or a folder holding an input). A local run holds `<out>.lock` throughout
(pipelines/outputs/output_lock.py), so a second run into the same folder stops at once.
Shards are written to a staging directory beside the output and swapped in only when the
pipeline has finished (pipelines/outputs/staging.py: the previous output is restored on any
failure, and `review/` is carried over), so an interrupted run never leaves a half-written
output; `manifest.json` is written last.
"""

from __future__ import annotations

import functools
import logging
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from pipelines.config import RunConfig
from pipelines.errors import RunFailed
from pipelines.generators import vllm_server
from pipelines.generators.backends import GeneratorIdentity
from pipelines.generators.cache import default_cache_dir
from pipelines.generators.handler import GeneratorModelHandler, metric
from pipelines.outputs import manifest as manifest_lib
from pipelines.outputs import output_dir as outputs
from pipelines.outputs import report_html
from pipelines.outputs import staging as staging_lib
from pipelines.outputs.audit import WriteAuditSample
from pipelines.outputs.card import write_card
from pipelines.outputs.info import RunInfo
from pipelines.outputs.output_lock import OutputLock
from pipelines.outputs.progress import PROGRESS
from pipelines.outputs.shards import WriteShards
from pipelines.recipes.base import BuildContext, Inputs, RecipeOutputs
from pipelines.recipes.registry import REGISTRY
from pipelines.runtime.beam_options import (
    check_gpu_options,
    check_run_options,
    generation_resource_hints,
)
from pipelines.runtime.input_locations import input_locations
from pipelines.transforms.filter_chain import check_scorers, rule_config
from schemas import FAILURE_SCHEMA, RECORD_SCHEMA, REJECTED_SCHEMA, InstructionRecord
from schemas.tree import NODE_SCHEMA

log = logging.getLogger(__name__)

OUTPUT_DIRS = {
    "data": RECORD_SCHEMA,  # kept instances: the dataset
    "instructions": RECORD_SCHEMA,  # accepted machine instructions
    "rejected": REJECTED_SCHEMA,
    "failed": FAILURE_SCHEMA,
    "nodes": NODE_SCHEMA,  # Explore-Instruct: the task tree, one row per node
}
STEPS_DIR = "steps"  # a chained run (`then:`): steps/<recipe>/ holds each earlier step's rows


@dataclass(frozen=True)
class RunResult:
    output_dir: Path | str  # a gs:// prefix stays a string
    manifest: dict


def run(cfg: RunConfig, beam_args: Sequence[str] = (), *, endpoint: str | None = None,
        overwrite: bool = False, config_path: str | Path | None = None) -> RunResult:
    """Run a config; `endpoint` points every generator call at an existing server (tests).

    An existing output is replaced only when it is a complete earlier run holding nothing
    else, or with `overwrite`; `config_path` (the YAML file) is guarded like an input.
    """
    started = PROGRESS.start()  # one clock for the progress line and the manifest
    check_run_options(cfg, beam_args)  # before any file, model or network is touched
    seeds, input_rows, identity = validate_inputs(cfg)
    reads = input_locations(cfg, config_path)
    if "://" in cfg.output_dir:
        return _run_remote(cfg, beam_args, seeds, input_rows, identity, started, reads,
                           overwrite)
    output_dir = Path(cfg.output_dir).resolve()
    outputs.check_protected(output_dir, reads)  # before the lock file is made beside it
    with OutputLock(output_dir):  # a second run into the same folder stops here, at once
        staging_lib.recover(output_dir)  # an output a crashed swap left aside
        outputs.check_local(output_dir, reads, overwrite)  # before anything runs or is written
        cache_dir = (cfg.cache.dir or default_cache_dir()) if cfg.cache.enabled else None
        staging = staging_lib.fresh(output_dir)
        servers_before = _running_servers()
        try:
            metrics = _run_pipeline(cfg, seeds, identity, staging, cache_dir, beam_args,
                                    endpoint)
            manifest = manifest_lib.build(
                run_info(cfg), identity, metrics, staging, started=started,
                cache_dir=cache_dir, input_rows=input_rows)
            # README.md: the dataset card, before the manifest
            write_card(staging, manifest, REGISTRY[cfg.recipe].info)
            _write_report(staging, manifest)  # report.html, also before the manifest
            manifest_lib.seal(manifest, outputs.file_records(
                staging, staging_lib.staged_files(staging)))
            manifest_lib.write(staging, manifest)
            outputs.check_local(output_dir, reads, overwrite)  # it may have changed meanwhile
            kept = staging_lib.promote(staging, output_dir)
        except BaseException:
            staging_lib.discard(staging)
            raise
        finally:
            _stop_servers_started_since(servers_before)
    if kept:
        PROGRESS.note(kept)
    result = RunResult(output_dir, manifest)
    problems = manifest_lib.problems(manifest, cfg.max_failure_ratio)
    if problems:
        raise RunFailed("; ".join(problems))
    return result


def run_info(cfg: RunConfig) -> RunInfo:
    """What the manifest needs of the config and its recipes (outputs/ know neither): every
    step's targets, and the generators whose server settings it records."""
    steps = (cfg.recipe, *cfg.then)
    return RunInfo(
        recipe=cfg.recipe, then=cfg.then, config=cfg.to_dict(), generator=cfg.generator,
        generators=tuple(gen for _, gen in REGISTRY[cfg.recipe].generators(cfg)),
        targets={name: functools.partial(REGISTRY[name].targets, cfg) for name in steps})


def validate_inputs(cfg: RunConfig) -> tuple[list, int, GeneratorIdentity | None]:
    """Check every input of a config (files, models) before anything is written.

    Returns the seed tasks (if the recipe has them), the number of input rows and the
    generator identity (None for recipes without a generator).
    """
    inputs = REGISTRY[cfg.recipe].validate(cfg)
    for name in cfg.then:  # chained steps read no input; they check what they need
        REGISTRY[name].validate_rows(cfg)
    rule_config(cfg.filters.rules)
    check_scorers(cfg.filters)
    return list(inputs.seeds), inputs.rows, inputs.identity


def _run_remote(cfg: RunConfig, beam_args: Sequence[str], seeds, input_rows: int,
                identity: GeneratorIdentity | None, started: float,
                reads: Sequence[tuple[str, str]], overwrite: bool) -> RunResult:
    """A run whose output lives on gs:// (e.g. a Dataflow job).

    Same discipline as a local run, through Beam FileSystems: the same check of what may be
    replaced, before the job and again before the swap; shards go to a staging prefix, which
    is deleted whatever happens. Object stores cannot swap a directory atomically, so the swap
    moves the old output aside (its manifest first, so it stops claiming to be complete),
    moves the staged objects in, writes `manifest.json` last (the commit marker a reader waits
    for) and only then deletes the old output. A failure during the swap puts the old output
    back; should even that fail, the log names the prefix that holds it.
    """
    out = cfg.output_dir.rstrip("/")
    outputs.check_remote(out, reads, overwrite)
    stamp = time.time_ns()
    staging = f"{out}.staging-{stamp}"
    cache_dir = cfg.cache.dir if cfg.cache.enabled else None
    try:
        metrics = _run_pipeline(cfg, seeds, identity, staging, cache_dir, beam_args, None)
        manifest = manifest_lib.build(run_info(cfg), identity, metrics, staging,
                                      started=started, cache_dir=cache_dir,
                                      input_rows=input_rows)
        # README.md and report.html move with the shards
        write_card(staging, manifest, REGISTRY[cfg.recipe].info)
        _write_report(staging, manifest)
        manifest_lib.seal(manifest, outputs.remote_records(staging))
        outputs.check_remote(out, reads, overwrite)  # it may have changed during the job
        _swap_remote(staging, out, f"{out}.old-{stamp}", manifest)
    finally:
        try:  # empty after a swap; whatever was written after a failure
            _delete_remote(staging)
        except Exception:  # noqa: BLE001 - must not hide the run's own error
            log.warning("staging %s could not be deleted", staging, exc_info=True)
    problems = manifest_lib.problems(manifest, cfg.max_failure_ratio)
    if problems:
        raise RunFailed("; ".join(problems))
    return RunResult(out, manifest)


def _swap_remote(staging: str, out: str, aside: str, manifest: dict) -> None:
    """Replace the objects under `out` with the staged ones; see `_run_remote`."""
    new_landed = False
    try:
        _move_remote(out, aside, manifest_first=True)
        new_landed = True  # from here on every object under `out` is a new one
        _move_remote(staging, out, manifest_first=True)
        manifest_lib.write(out, manifest)
    except BaseException:
        try:
            if new_landed:
                _delete_remote(out)
            _move_remote(aside, out, manifest_first=False)
        except Exception:  # noqa: BLE001 - the original error is the one to raise
            log.error("the previous output could not be moved back to %s; it is kept at %s",
                      out, aside, exc_info=True)
        raise
    try:
        _delete_remote(aside)
    except Exception:  # noqa: BLE001 - the new output is complete; only space is lost
        log.warning("the previous output at %s could not be deleted", aside, exc_info=True)


def _move_remote(src: str, dst: str, *, manifest_first: bool) -> None:
    """Move every object under `src/` to the same name under `dst/`, with manifest.json
    first (taking an output apart) or last (putting one back together)."""
    names = outputs.remote_files(src)
    rest = [n for n in names if n != outputs.MANIFEST]
    batches = [[n] for n in names if n == outputs.MANIFEST]
    batches = [*batches, rest] if manifest_first else [rest, *batches]
    for batch in batches:
        if batch:
            FileSystems.rename([f"{src}/{n}" for n in batch], [f"{dst}/{n}" for n in batch])


def _delete_remote(prefix: str) -> None:
    names = outputs.remote_files(prefix)
    if names:
        FileSystems.delete([f"{prefix}/{n}" for n in names])


def _run_pipeline(cfg: RunConfig, seeds, identity: GeneratorIdentity | None, staging: Path,
                  cache_dir: str | None, beam_args: Sequence[str], endpoint: str | None):
    options = PipelineOptions(list(beam_args))
    if "runner" not in options.get_all_options(drop_default=True):
        options = PipelineOptions(["--runner=FnApiRunner", *beam_args])
    p = build_pipeline(options, cfg, seeds, identity, str(staging), cache_dir, endpoint)
    result = p.run()
    result.wait_until_finish()
    return manifest_lib.read_counters(result)


def build_pipeline(options: PipelineOptions, cfg: RunConfig, seeds,
                   identity: GeneratorIdentity | None, staging: str, cache_dir: str | None,
                   endpoint: str | None = None) -> beam.Pipeline:
    """The whole job graph of a config, writing under `staging` (a local path or gs://)."""
    check_gpu_options(options)
    hints = generation_resource_hints(options)
    handler = None
    if identity is not None:
        handler = GeneratorModelHandler(cfg.generator, identity, cache_dir, endpoint=endpoint,
                                        resource_hints=hints,
                                        retry_failed=cfg.cache.retry_failed)
    p = beam.Pipeline(options=options)
    inputs = Inputs(len(seeds), identity, seeds)
    ctx = BuildContext(cfg, inputs, handler, cache_dir, endpoint, hints)
    outputs = REGISTRY[cfg.recipe].build(p, ctx)
    outputs, steps = _chain(outputs, cfg, ctx)
    collections = {"data": outputs.dataset, **outputs.tables,
                   "rejected": _flatten(p, "AllRejected", outputs.rejected),
                   "failed": _flatten(p, "AllFailed", outputs.failed)}
    for name, pcoll in collections.items():
        _ = pcoll | f"Write/{name}" >> WriteShards(
            f"{staging}/{name}", OUTPUT_DIRS[name], cfg.num_shards)
    for name, pcoll in steps.items():  # each earlier step's kept rows
        _ = pcoll | f"Write/{STEPS_DIR}/{name}" >> WriteShards(
            f"{staging}/{STEPS_DIR}/{name}", RECORD_SCHEMA, cfg.num_shards)
    for name, (items, writer) in outputs.files.items():
        _ = items | f"Write/{name}" >> writer(f"{staging}/{name}")
    if cfg.audit_per_source:
        _ = outputs.dataset | "Write/audit" >> WriteAuditSample(
            f"{staging}/audit", per_source=cfg.audit_per_source, seed=cfg.seed)
    return p


def _chain(outputs: RecipeOutputs, cfg: RunConfig, ctx: BuildContext
           ) -> tuple[RecipeOutputs, dict[str, beam.PCollection]]:
    """Run `cfg.then` in this job: each step takes the kept rows of the one before it.

    Returns the last step's outputs (its rows become `data/`; every step's rejected, failed,
    tables and files are gathered into it) and the kept rows of every earlier step by name.
    Each boundary is counted (`instructbeam/step/<name>`: rows in, rows kept), so the
    manifest can check that nothing is lost between steps."""
    if not cfg.then:
        return outputs, {}
    steps: dict[str, beam.PCollection] = {}
    names = [cfg.recipe, *cfg.then]
    for before, name in zip(names, names[1:], strict=False):
        rows = outputs.dataset | f"Step/{before}/Kept" >> beam.Map(
            _count_step, step=before, name=manifest_lib.STEP_KEPT)
        steps[before] = rows
        rows = rows | f"Step/{name}/In" >> beam.Map(
            _count_step, step=name, name=manifest_lib.STEP_IN)
        build_rows = REGISTRY[name].build_rows
        assert build_rows is not None  # the config checked it
        step = build_rows(rows, ctx, f"{name}/")
        outputs = RecipeOutputs(
            step.dataset, {**outputs.tables, **step.tables}, [*outputs.rejected, *step.rejected],
            [*outputs.failed, *step.failed], {**outputs.files, **step.files})
    outputs.dataset = outputs.dataset | f"Step/{names[-1]}/Kept" >> beam.Map(
        _count_step, step=names[-1], name=manifest_lib.STEP_KEPT)
    return outputs, steps


def _count_step(record: InstructionRecord, step: str, name: str) -> InstructionRecord:
    metric("step", step, name)  # read back under manifest.STEP_PREFIX
    return record


def _flatten(p: beam.Pipeline, label: str, pcolls: list) -> beam.PCollection:
    if not pcolls:
        return p | label >> beam.Create([])
    return pcolls | label >> beam.Flatten()


def _write_report(staging: Path | str, manifest: dict) -> None:
    """A report bug must not cost the run (staging is deleted on error): warn and go on;
    `instructbeam report OUT` writes it again. A remote staging prefix is copied to a local
    temporary folder, the page is rendered there and uploaded beside the shards."""
    try:
        if not (isinstance(staging, str) and "://" in staging):
            report_html.write_report(Path(staging), manifest)
            return
        with tempfile.TemporaryDirectory(prefix="instructbeam-report-") as tmp:
            for name in outputs.remote_files(staging):
                local = Path(tmp) / name
                local.parent.mkdir(parents=True, exist_ok=True)
                with FileSystems.open(f"{staging}/{name}",
                                      compression_type="uncompressed") as src, \
                        local.open("wb") as dst:
                    shutil.copyfileobj(src, dst)
            page = report_html.write_report(Path(tmp), manifest).read_bytes()
        with FileSystems.create(f"{staging}/{report_html.REPORT_FILE}", mime_type="text/html",
                                compression_type="uncompressed") as handle:
            handle.write(page)
    except Exception:  # noqa: BLE001
        log.warning("report.html was not written", exc_info=True)


def _running_servers() -> frozenset[str]:
    return vllm_server.running_keys()


def _stop_servers_started_since(before: frozenset[str]) -> None:
    vllm_server.stop_all(keep=before)
