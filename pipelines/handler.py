"""Our RunInference ModelHandler: one request per element, through the cache, never a batch fail.

Beam's stock vLLM handlers take one fixed set of sampling arguments per step and fail a whole
batch on one error. Ours sends each element as its own request (its own seed and sampling),
looks it up in the response cache first, retries transport faults, and turns a final failure
into a failed outcome for that element alone. Backends differ only in how the endpoint is
obtained (`endpoint_for`).
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import ModelHandler, PredictionResult

from pipelines.cache import ResponseCache, cache_key
from pipelines.config import GeneratorConfig
from pipelines.generation import (
    GenerationFailed,
    GenerationOutcome,
    GenerationRequest,
    OpenAICompatClient,
    RetryPolicy,
    TimeoutPolicy,
)
from pipelines.progress import PROGRESS
from pipelines.revision import UNVERSIONED, Resolution, resolve_vllm, without_arg
from pipelines.server_settings import ServerSettings, choose_server_settings, read_machine_facts

NAMESPACE = "instructbeam"
log = logging.getLogger(__name__)
_WARNED: set[str] = set()
_DRIVER_TOKEN = uuid.uuid4().hex[:12]


@dataclass(frozen=True)
class GeneratorIdentity:
    """What produced the text: recorded on every row and part of every cache key."""

    model: str  # provenance id, e.g. HuggingFaceTB/SmolLM2-135M-Instruct
    revision: str
    served_name: str  # the name the endpoint serves it under
    # `vllm` from the Hugging Face cache: the hub commit the server must load, so that the
    # recorded revision is the one that answers (without it vLLM follows `main`).
    pin: str | None = None


def resolve_identity(cfg: GeneratorConfig) -> GeneratorIdentity:
    if cfg.backend == "embedded":
        from pipelines.embedded import EMBEDDED_MODELS, model_revision

        if cfg.model not in EMBEDDED_MODELS:
            known = ", ".join(sorted(EMBEDDED_MODELS))
            raise ValueError(f"unknown embedded model {cfg.model!r} (known: {known})")
        entry = EMBEDDED_MODELS[cfg.model]
        return GeneratorIdentity(entry.hf_model_id, model_revision(cfg.model), cfg.model)
    if cfg.backend == "vllm":
        resolution = resolve_vllm(cfg.model, cfg.server_args)
    elif cfg.revision:
        resolution = Resolution(cfg.revision)
    else:
        resolution = Resolution(UNVERSIONED, warning=(
            f"generator.revision is not set for the openai endpoint's model {cfg.model!r}: "
            "cached answers are reused even after the endpoint serves a new version of it; "
            "set generator.revision to the version it serves"))
    if resolution.warning:
        _warn_once(resolution.warning)
    return GeneratorIdentity(cfg.model, resolution.revision, cfg.model, resolution.pin)


def _warn_once(message: str) -> None:
    """Identities are resolved more than once per run (validation, then each step)."""
    if message not in _WARNED:
        _WARNED.add(message)
        log.warning(message)


def endpoint_for(cfg: GeneratorConfig, share_token: str = "local", pin: str | None = None
                 ) -> str:
    """Base URL of a server for this generator: an existing one, or one we start and own.

    `pin`: the hub commit the identity recorded (`GeneratorIdentity.pin`), resolved on the
    driver and handed to the server wherever it starts.
    """
    if cfg.backend == "openai":
        assert cfg.base_url is not None
        return cfg.base_url
    from apache_beam.utils.multi_process_shared import MultiProcessShared

    spec = server_spec(cfg, pin)
    # One server per machine for all SDK worker processes of this job (Dataflow starts one
    # per vCPU; `direct_num_workers` > 1 locally): the first process to ask hosts it.
    tag = f"instructbeam-vllm-{spec.key}-{share_token}"
    shared = MultiProcessShared(lambda: _SharedServer(spec), tag=tag, always_proxy=True)
    return shared.acquire().base_url()


class _SharedServer:
    """Lives in the process that hosts the shared server; restarts it if it was stopped."""

    def __init__(self, spec) -> None:
        self._spec = spec

    def base_url(self) -> str:
        from pipelines import vllm_server

        return vllm_server.get_or_start(self._spec, on_event=PROGRESS.note).base_url


def server_settings(cfg: GeneratorConfig) -> ServerSettings | None:
    """How this machine runs the generator's server (dtype, CPU threads); None for `openai`.

    Evaluated where the server starts (a Beam worker), so each machine decides for itself.
    """
    if cfg.backend == "openai":
        return None
    return choose_server_settings(read_machine_facts(), embedded=cfg.backend == "embedded",
                                  dtype=cfg.dtype, cpu_threads=cfg.cpu_threads,
                                  server_args=cfg.server_args)


def server_spec(cfg: GeneratorConfig, pin: str | None = None):  # -> vllm_server.ServerSpec
    """The server a `vllm`/`embedded` generator runs on; equal specs share one server.

    A `pin` replaces any `--revision` in `server_args`, so the server loads exactly the
    commit the rows and cache keys name.
    """
    from pipelines import vllm_server

    settings = server_settings(cfg)
    assert settings is not None, "the openai backend has no server of ours"
    if cfg.backend == "embedded":
        from pipelines.embedded import STORAGE_DTYPES, materialize

        # The weights are stored in the dtype the server computes in (conversion and serving
        # agree); a dtype we do not convert to (e.g. float16 in server_args) reads the default.
        storage = settings.dtype if settings.dtype in STORAGE_DTYPES else None
        model_path = str(materialize(cfg.model, dtype=storage))
    else:
        model_path = cfg.model
    args = tuple(cfg.server_args)
    if pin is not None:
        args = (*without_arg(args, "--revision"), "--revision", pin)
    return vllm_server.ServerSpec(
        model=model_path, served_model_name=cfg.model,
        extra_args=(*args, *settings.extra_args), env=settings.env,
        label=settings.label())


_TIMEOUT_POLICIES: dict[tuple[str, str, float, bool], TimeoutPolicy] = {}
_TIMEOUT_POLICIES_LOCK = threading.Lock()


def _timeout_policy(base_url: str, served_name: str, cfg: GeneratorConfig) -> TimeoutPolicy:
    """One policy per server and process: every stage (and round) that calls the same model
    shares what was measured about its speed, so a later stage does not start cold."""
    key = (base_url, served_name, cfg.timeout_s, cfg.adaptive_timeout)
    with _TIMEOUT_POLICIES_LOCK:
        policy = _TIMEOUT_POLICIES.get(key)
        if policy is None:
            policy = _TIMEOUT_POLICIES[key] = TimeoutPolicy(cfg.timeout_s,
                                                            adaptive=cfg.adaptive_timeout)
        return policy


class _Session:
    """What load_model returns: the cache, and a client bound to an endpoint on first need.

    The endpoint (for `vllm`/`embedded`: a server we start) is only obtained on the first
    cache miss, so a fully cached rerun never starts a server.
    """

    def __init__(self, cfg: GeneratorConfig, identity: GeneratorIdentity,
                 cache: ResponseCache | None, endpoint: str | None, share_token: str) -> None:
        self._cfg = cfg
        self._endpoint = endpoint
        self._share_token = share_token
        self._client: OpenAICompatClient | None = None
        self._no_endpoint: Exception | None = None  # why the endpoint could not be had
        self._lock = threading.Lock()
        self.identity = identity
        self.cache = cache
        self.pool = ThreadPoolExecutor(max_workers=cfg.max_concurrency,
                                       thread_name_prefix="instructbeam-gen")

    @property
    def client(self) -> OpenAICompatClient:
        with self._lock:
            if self._client is None:
                # The threads queued behind a failed (or aborted) server start must not each
                # start it again: a model load can take minutes.
                if self._no_endpoint is not None:
                    raise self._no_endpoint
                cfg = self._cfg
                try:
                    endpoint = self._endpoint or endpoint_for(cfg, self._share_token,
                                                                self.identity.pin)
                except Exception as exc:
                    self._no_endpoint = exc
                    raise
                api_key = os.environ.get(cfg.api_key_env) if cfg.api_key_env else None
                retry = RetryPolicy(cfg.max_attempts, cfg.backoff_s, cfg.max_backoff_s)
                self._client = OpenAICompatClient(
                    endpoint, self.identity.served_name,
                    api_key=api_key, timeout_s=cfg.timeout_s, retry=retry,
                    timeouts=_timeout_policy(endpoint, self.identity.served_name, cfg))
            return self._client


class GeneratorModelHandler(ModelHandler[GenerationRequest, PredictionResult, _Session]):
    def __init__(self, cfg: GeneratorConfig, identity: GeneratorIdentity,
                 cache_dir: str | None, *, endpoint: str | None = None,
                 resource_hints: dict[str, str] | None = None) -> None:
        """`endpoint` overrides how the URL is obtained (tests point it at their own server).

        `resource_hints` (e.g. {"accelerator": "type:nvidia-l4;count:1;install-nvidia-driver"})
        go on the generation steps only: Dataflow's right-fitting then puts just those steps
        on GPU workers.
        """
        super().__init__()
        self._cfg = cfg
        self._identity = identity
        self._cache_dir = cache_dir
        self._endpoint = endpoint
        self._resource_hints = dict(resource_hints or {})
        # Workers of this driver's jobs share one server per model and machine; other
        # drivers on the same machine do not (the token is pickled with the handler).
        self._share_token = _DRIVER_TOKEN

    def load_model(self) -> _Session:
        cache = ResponseCache(self._cache_dir) if self._cache_dir else None
        return _Session(self._cfg, self._identity, cache, self._endpoint, self._share_token)

    def run_inference(self, batch: Sequence[GenerationRequest], model: _Session,
                      inference_args: dict[str, Any] | None = None
                      ) -> Iterable[PredictionResult]:
        outcomes = list(model.pool.map(lambda r: _generate_one(r, model), batch))
        for outcome in outcomes:  # counters only work on the bundle's thread, not the pool's
            _count_outcome(outcome, caching=model.cache is not None)
        return [PredictionResult(o.request, o) for o in outcomes]

    def get_metrics_namespace(self) -> str:
        return NAMESPACE

    def get_resource_hints(self) -> dict[str, str]:
        return dict(self._resource_hints)

    def batch_elements_kwargs(self) -> dict[str, Any]:
        # Fixed, large batches: the thread pool keeps `max_concurrency` requests in flight
        # inside a batch, and vLLM batches across requests itself. Beam's adaptive sizing
        # would start at one element and starve the server while it grows.
        size = 8 * self._cfg.max_concurrency
        return {"min_batch_size": size, "max_batch_size": size}

    def share_model_across_processes(self) -> bool:
        return False


def _count(stage: str, name: str, value: int = 1) -> None:
    if value:
        Metrics.counter(f"{NAMESPACE}/generator/{stage}", name).inc(value)


def _count_outcome(outcome: GenerationOutcome, *, caching: bool) -> None:
    stage = outcome.request.stage
    completion = outcome.completion
    PROGRESS.add(stage, requests=1, cached=int(outcome.cached),
                 failed=int(completion is None),
                 tokens=0 if completion is None or outcome.cached
                 else completion.completion_tokens)
    _count(stage, "requests")
    if outcome.cached:
        _count(stage, "cache_hits")
        return
    if caching:
        _count(stage, "cache_misses")
    _count(stage, "retries", max(outcome.attempts - 1, 0))
    _count(stage, "timeouts", outcome.timeouts)
    if outcome.completion is None:
        _count(stage, "failed")
        return
    _count(stage, "calls")
    _count(stage, "prompt_tokens", outcome.completion.prompt_tokens)
    _count(stage, "completion_tokens", outcome.completion.completion_tokens)


def _generate_one(request: GenerationRequest, session: _Session) -> GenerationOutcome:
    key = cache_key(session.identity.model, session.identity.revision, request)
    if session.cache is not None:
        hit = session.cache.get(key)
        if hit is not None:
            return GenerationOutcome(request, hit, cached=True, attempts=0)
    try:
        completion, attempts, timeouts = session.client.generate(request)
    except GenerationFailed as exc:
        return GenerationOutcome(request, None, attempts=exc.attempts,
                                 error_class=exc.kind, error_message=str(exc),
                                 timeouts=exc.timeouts)
    if session.cache is not None:
        session.cache.put(key, completion)
    return GenerationOutcome(request, completion, attempts=attempts, timeouts=timeouts)
