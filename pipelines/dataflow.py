"""Dataflow: building a recipe's job offline to check it before paying for it.

The job graph is the same code as a local run; `plan_job` builds it with
`--dry_run=True --no_auth`, which needs no network or credentials, after the options were
checked locally (`pipelines.runtime.beam_options`, which also holds the two GPU modes).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from apache_beam.ml.inference.base import RunInference
from apache_beam.options.pipeline_options import (
    PipelineOptions,
)
from apache_beam.pipeline import PipelineVisitor

from pipelines.config import RunConfig
from pipelines.errors import InputError
from pipelines.run import build_pipeline, validate_inputs
from pipelines.runtime.beam_options import check_run_options, worker_accelerator

# Dataflow's documented limits: the job creation request and the serialized graph.
MAX_REQUEST_BYTES = 20 * 1024 * 1024
MAX_GRAPH_BYTES = 10 * 1024 * 1024


@dataclass(frozen=True)
class JobPlan:
    steps: list[str]  # stable, human-readable step names
    request_bytes: int  # the Dataflow job creation request (JSON)
    graph_bytes: int  # the portable pipeline proto
    model_identifiers: list[str]  # RunInference steps: one per distinct generator server
    gpu_mode: str  # "worker_accelerator" | "resource_hints" | "none"
    accelerated_steps: list[str]
    environment: dict  # the job's worker environment as Dataflow would receive it

    def summary(self) -> str:
        return (f"{len(self.steps)} steps, job request {self.request_bytes / 1024:.0f} KiB "
                f"(limit {MAX_REQUEST_BYTES // 2**20} MiB), "
                f"graph {self.graph_bytes / 1024:.0f} KiB "
                f"(limit {MAX_GRAPH_BYTES // 2**20} MiB), GPU mode {self.gpu_mode}, "
                f"{len(self.model_identifiers)} shared RunInference model(s), "
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
