"""Beam pipeline options: checked locally before anything runs, and the GPU options.

Two GPU modes (Dataflow refuses both at once):
- every worker has a GPU: `--dataflow_service_options=worker_accelerator=type:...;count:1;
  install-nvidia-driver` (plus a GPU machine type);
- right-fitting: `--generation_accelerator=type:...` puts an accelerator resource hint on the
  generation steps only; filters and writers run on plain CPU workers.
Beam itself answers some mistakes with a traceback and a malformed `--temp_location` with
minutes of network retries, so `check_run_options` runs first (the CLI, `run`, `plan_job`).
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Sequence

from apache_beam.options.pipeline_options import (
    DebugOptions,
    GoogleCloudOptions,
    PipelineOptions,
    StandardOptions,
    TestOptions,
    WorkerOptions,
)
from apache_beam.options.pipeline_options_validator import PipelineOptionsValidator
from apache_beam.transforms.resources import parse_resource_hints

from pipelines.config import RunConfig
from pipelines.errors import InputError
from pipelines.runtime import gcp_names


class InstructbeamOptions(PipelineOptions):
    """Our own pipeline options; Beam parses them with the rest of the command line."""

    @classmethod
    def _add_argparse_args(cls, parser) -> None:  # noqa: ANN001 - Beam's signature
        parser.add_argument(
            "--generation_accelerator", default=None,
            help="accelerator resource hint for the generation steps only (right-fitting), "
                 "e.g. 'type:nvidia-l4;count:1;install-nvidia-driver'")
        parser.add_argument(
            "--generation_min_ram", default=None,
            help="min_ram resource hint for the generation steps, e.g. '32GB'")


def generation_resource_hints(options: PipelineOptions) -> dict[str, str]:
    ours = options.view_as(InstructbeamOptions)
    hints = {}
    if ours.generation_accelerator:
        hints["accelerator"] = ours.generation_accelerator
    if ours.generation_min_ram:
        hints["min_ram"] = ours.generation_min_ram
    return hints


def worker_accelerator(options: PipelineOptions) -> str | None:
    for item in options.view_as(GoogleCloudOptions).dataflow_service_options or []:
        if item.startswith("worker_accelerator="):
            return item.split("=", 1)[1]
    return None


def check_gpu_options(options: PipelineOptions) -> None:
    """One clear error for the combination Dataflow would reject after minutes of setup."""
    if worker_accelerator(options) and options.view_as(InstructbeamOptions).generation_accelerator:
        raise InputError("choose one GPU mode: --dataflow_service_options=worker_accelerator=... "
                         "(all workers) or --generation_accelerator=... (generation steps "
                         "only); Dataflow does not allow both")


def check_beam_args(beam_args: Sequence[str]) -> PipelineOptions:
    """Parse and check Beam options before Beam acts on them; one InputError per mistake.

    Beam reports a malformed option as a usage dump (typed options), a traceback from
    `Pipeline()` (project, worker counts), or, for a bad `--temp_location`, only a warning
    followed by two minutes of network retries looking for a default bucket. Everything
    here is local: no network, no credentials, no gcloud.
    """
    options = PipelineOptions(list(beam_args))
    _parse_all(options)
    check_gpu_options(options)
    _check_resource_hints(options)
    if is_dataflow(options):
        check_dataflow_options(options)
    return options


def check_run_options(cfg: RunConfig, beam_args: Sequence[str]) -> PipelineOptions:
    """`check_beam_args` plus the config's own gs:// locations (output, cache)."""
    options = check_beam_args(beam_args)
    for label, location in (("output_dir", cfg.output_dir),
                            ("cache.dir", cfg.cache.dir if cfg.cache.enabled else None)):
        if location and location.startswith("gs://"):
            problem = gcp_names.gcs_location_problem(location, need_path=True)
            if problem:
                raise InputError(f"{label} {location!r}: {problem}")
    return options


def is_dataflow(options: PipelineOptions) -> bool:
    runner = options.view_as(StandardOptions).runner or ""
    name = runner.rsplit(".", 1)[-1].lower()
    return name in ("dataflow", "dataflowrunner", "testdataflowrunner")


def _parse_all(options: PipelineOptions) -> None:
    """Parse every option now, turning argparse's usage dump and exit into one line."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            options.get_all_options()
    except SystemExit:
        lines = err.getvalue().strip().splitlines() or ["invalid Beam option"]
        raise InputError(lines[-1].split(" error: ", 1)[-1]) from None


def _check_resource_hints(options: PipelineOptions) -> None:
    ours = options.view_as(InstructbeamOptions)
    if ours.generation_accelerator:
        _option_ok("--generation_accelerator", ours.generation_accelerator,
                   gcp_names.accelerator_problem(ours.generation_accelerator))
    if ours.generation_min_ram:
        try:
            parse_resource_hints({"min_ram": ours.generation_min_ram})
        except ValueError:
            raise InputError(f"--generation_min_ram {ours.generation_min_ram!r}: give a size "
                             "such as 32GB or 16GiB") from None
    for hint in options.view_as(StandardOptions).resource_hints or []:
        name, _, value = hint.partition("=")
        try:
            parse_resource_hints({name: value})
        except ValueError as exc:
            raise InputError(f"--resource_hints {hint!r}: {exc}") from None


def _option_ok(flag: str, value: object, problem: str | None) -> None:
    if problem:
        raise InputError(f"{flag} {value!r}: {problem}")


def check_dataflow_options(options: PipelineOptions) -> None:
    """The Dataflow options that Beam would only reject late, remotely or noisily."""
    cloud = options.view_as(GoogleCloudOptions)
    worker = options.view_as(WorkerOptions)
    if not cloud.project:
        raise InputError("--project is required for Dataflow (the project ID, e.g. "
                         "--project my-project)")
    _option_ok("--project", cloud.project, gcp_names.project_id_problem(cloud.project))
    region = cloud.region or os.environ.get("CLOUDSDK_COMPUTE_REGION")
    if not region:
        raise InputError("--region is required for Dataflow (e.g. --region us-central1)")
    _option_ok("--region", region, gcp_names.region_problem(region))
    if worker.worker_region:
        _option_ok("--worker_region", worker.worker_region,
                   gcp_names.region_problem(worker.worker_region))
    for flag, zone in (("--worker_zone", worker.worker_zone), ("--zone", worker.zone)):
        if zone:
            _option_ok(flag, zone, gcp_names.zone_problem(zone))
    if not (cloud.temp_location or cloud.staging_location):
        raise InputError("--temp_location is required for Dataflow (e.g. --temp_location "
                         "gs://BUCKET/tmp)")
    for flag, location in (("--temp_location", cloud.temp_location),
                           ("--staging_location", cloud.staging_location)):
        if location is not None:
            _option_ok(flag, location,
                       gcp_names.gcs_location_problem(location, need_path=False))
    if worker.machine_type:
        _option_ok("--machine_type", worker.machine_type,
                   gcp_names.machine_type_problem(worker.machine_type))
    for flag, count in (("--num_workers", worker.num_workers),
                        ("--max_num_workers", worker.max_num_workers),
                        ("--number_of_worker_harness_threads",
                         options.view_as(DebugOptions).number_of_worker_harness_threads)):
        if count is not None and count <= 0:
            raise InputError(f"{flag} {count}: must be a positive number")
    if worker.disk_size_gb is not None and worker.disk_size_gb < 0:
        raise InputError(f"--disk_size_gb {worker.disk_size_gb}: must be positive (or 0 for "
                         "Dataflow's default)")
    if (worker.num_workers and worker.max_num_workers
            and worker.num_workers > worker.max_num_workers):
        raise InputError(f"--num_workers {worker.num_workers} is more than --max_num_workers "
                         f"{worker.max_num_workers}")
    accelerator = worker_accelerator(options)
    if accelerator is not None:
        _option_ok("--dataflow_service_options worker_accelerator", accelerator,
                   gcp_names.accelerator_problem(accelerator))
    _beam_validation(options)


def _beam_validation(options: PipelineOptions) -> None:
    """Beam's own checks (job name, endpoint, conflicting options) as one line, not a traceback.

    Validated as a dry run: with valid locations (checked above) and a region, Beam's
    validator then needs neither the network (default bucket, soft-delete probe) nor gcloud.
    Its other side effects (staging_location defaults to temp_location, ...) are the ones
    `Pipeline()` makes anyway.
    """
    from apache_beam.runners.dataflow.dataflow_runner import DataflowRunner  # GCP extra

    test = options.view_as(TestOptions)
    dry_run = test.dry_run
    test.dry_run = True
    try:
        errors = PipelineOptionsValidator(options, DataflowRunner()).validate()
    finally:
        test.dry_run = dry_run
    if errors:
        raise InputError("; ".join(error.strip() for error in errors))
