"""Dataflow: GPU options, and building a recipe's job offline to check it before paying for it.

Two GPU modes (Dataflow refuses both at once):
- every worker has a GPU: `--dataflow_service_options=worker_accelerator=type:...;count:1;
  install-nvidia-driver` (plus a GPU machine type);
- right-fitting: `--generation_accelerator=type:...` puts an accelerator resource hint on the
  generation steps only; filters and writers run on plain CPU workers.
The job graph is the same code as a local run; `plan_job` builds it with
`--dry_run=True --no_auth`, which needs no network or credentials. Options are checked
locally first (`check_beam_args`, also used by `run`): Beam itself answers some mistakes
with a traceback and a malformed `--temp_location` with minutes of network retries.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass

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

from pipelines import gcp_names
from pipelines.config import RunConfig
from pipelines.errors import InputError

# Dataflow's documented limits: the job creation request and the serialized graph.
MAX_REQUEST_BYTES = 20 * 1024 * 1024
MAX_GRAPH_BYTES = 10 * 1024 * 1024


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


@dataclass(frozen=True)
class JobPlan:
    steps: list[str]  # stable, human-readable step names
    request_bytes: int  # the Dataflow job creation request (JSON)
    graph_bytes: int  # the portable pipeline proto
    model_identifiers: list[str]  # one per distinct generator server
    gpu_mode: str  # "worker_accelerator" | "resource_hints" | "none"
    accelerated_steps: list[str]
    environment: dict  # the job's worker environment as Dataflow would receive it

    def summary(self) -> str:
        return (f"{len(self.steps)} steps, job request {self.request_bytes / 1024:.0f} KiB "
                f"(limit {MAX_REQUEST_BYTES // 2**20} MiB), "
                f"graph {self.graph_bytes / 1024:.0f} KiB "
                f"(limit {MAX_GRAPH_BYTES // 2**20} MiB), GPU mode {self.gpu_mode}, "
                f"{len(self.model_identifiers)} generator server(s), "
                f"{len(self.accelerated_steps)} accelerated step(s)")

    def limit_problems(self) -> list[str]:
        """Why Dataflow would refuse this job for its size (empty if it fits)."""
        problems = []
        if self.request_bytes > MAX_REQUEST_BYTES:
            problems.append(f"the job request is {self.request_bytes / 2**20:.1f} MiB, over "
                            f"Dataflow's {MAX_REQUEST_BYTES / 2**20:g} MiB limit")
        if self.graph_bytes > MAX_GRAPH_BYTES:
            problems.append(f"the job graph is {self.graph_bytes / 2**20:.1f} MiB, over "
                            f"Dataflow's {MAX_GRAPH_BYTES / 2**20:g} MiB limit")
        return problems


def plan_job(cfg: RunConfig, beam_args: list[str]) -> JobPlan:
    """Build the Dataflow job of `cfg` without submitting it."""
    from apache_beam.ml.inference.base import RunInference
    from apache_beam.pipeline import PipelineVisitor

    from pipelines.run import build_pipeline, validate_inputs

    args = ["--runner=DataflowRunner", "--dry_run=True", "--no_auth",
            "--sdk_location=container", *beam_args]
    if not cfg.output_dir.startswith("gs://"):
        raise InputError(f"output_dir must be a gs:// location on Dataflow, got "
                         f"{cfg.output_dir!r}")
    cache_dir = cfg.cache.dir if cfg.cache.enabled else None
    if cache_dir is not None and not cache_dir.startswith("gs://"):
        raise InputError("cache.dir must be a gs:// location on Dataflow (workers share it)")
    options = check_run_options(cfg, args)
    seeds, _, identity = validate_inputs(cfg)
    p = build_pipeline(options, cfg, seeds, identity, f"{cfg.output_dir}.staging-plan",
                       cache_dir)

    tags: list[str] = []

    class _FindInference(PipelineVisitor):
        def enter_composite_transform(self, node) -> None:  # noqa: ANN001
            if isinstance(node.transform, RunInference):
                tags.append(node.transform._model_tag)

    p.visit(_FindInference())
    result = p.run()
    job = result.job
    proto = job.proto_pipeline
    steps = sorted(t.unique_name for t in proto.components.transforms.values())
    accelerated = sorted(
        t.unique_name for t in proto.components.transforms.values()
        if t.environment_id and any(
            "accelerator" in urn
            for urn in proto.components.environments[t.environment_id].resource_hints))
    mode = ("worker_accelerator" if worker_accelerator(options)
            else "resource_hints" if accelerated else "none")
    environment = _environment(options, proto)
    graph_bytes = len(proto.SerializeToString())
    # Upper bound of the creation request: the job, its environment, and the graph inline.
    request_bytes = len(job.json().encode()) + len(json.dumps(environment).encode()) + graph_bytes
    return JobPlan(steps, request_bytes, graph_bytes, sorted(set(tags)), mode, accelerated,
                   environment)


def _environment(options: PipelineOptions, proto) -> dict:  # noqa: ANN001 - proto type
    """The worker environment Dataflow would receive (service options, machine type, ...)."""
    from apache_beam.runners.dataflow.internal import apiclient
    from google.cloud.dataflow_v1beta3.types import Environment

    env = apiclient.Environment([], options, "", "", proto_pipeline=proto)
    return json.loads(Environment.to_json(env.proto))
