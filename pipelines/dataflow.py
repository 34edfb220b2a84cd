"""Dataflow: GPU options, and building a recipe's job offline to check it before paying for it.

Two GPU modes (Dataflow refuses both at once):
- every worker has a GPU: `--dataflow_service_options=worker_accelerator=type:...;count:1;
  install-nvidia-driver` (plus a GPU machine type);
- right-fitting: `--generation_accelerator=type:...` puts an accelerator resource hint on the
  generation steps only; filters and writers run on plain CPU workers.
The job graph is the same code as a local run; `plan_job` builds it with
`--dry_run=True --no_auth`, which needs no network or credentials.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from apache_beam.options.pipeline_options import GoogleCloudOptions, PipelineOptions

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


def plan_job(cfg: RunConfig, beam_args: list[str]) -> JobPlan:
    """Build the Dataflow job of `cfg` without submitting it."""
    from apache_beam.ml.inference.base import RunInference
    from apache_beam.pipeline import PipelineVisitor

    from pipelines.run import build_pipeline, validate_inputs

    args = ["--runner=DataflowRunner", "--dry_run=True", "--no_auth",
            "--sdk_location=container", *beam_args]
    options = PipelineOptions(args)
    check_gpu_options(options)
    if not cfg.output_dir.startswith("gs://"):
        raise InputError(f"output_dir must be a gs:// location on Dataflow, got "
                         f"{cfg.output_dir!r}")
    seeds, _, identity = validate_inputs(cfg)
    cache_dir = cfg.cache.dir if cfg.cache.enabled else None
    if cache_dir is not None and not cache_dir.startswith("gs://"):
        raise InputError("cache.dir must be a gs:// location on Dataflow (workers share it)")
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
