"""Our RunInference ModelHandler: one request per element, through the cache, never a batch fail.

Beam's stock vLLM handlers take one fixed set of sampling arguments per step and fail a whole
batch on one error. Ours sends each element as its own request (its own seed and sampling),
looks it up in the response cache first, retries transport faults, and turns a final failure
into a failed outcome for that element alone. Backends differ only in how the endpoint is
obtained (`pipelines.generators.backends`).
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from apache_beam.metrics import Metrics
from apache_beam.ml.inference.base import ModelHandler, PredictionResult

from pipelines.generators.backends import BACKENDS, GeneratorIdentity, endpoint_for
from pipelines.generators.cache import ResponseCache, cache_key
from pipelines.generators.generation import (
    GenerationFailed,
    GenerationOutcome,
    GenerationRequest,
    OpenAICompatClient,
    PrefixWarmup,
    RecordedFailure,
    RetryPolicy,
    TimeoutPolicy,
    warmup_key,
)
from pipelines.generators.vllm_server import read_prefix_cache
from pipelines.outputs.progress import PROGRESS
from pipelines.settings import GeneratorConfig

NAMESPACE = "instructbeam"
log = logging.getLogger(__name__)
_DRIVER_TOKEN = uuid.uuid4().hex[:12]


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


_WARMUPS: dict[tuple[GeneratorIdentity, str], PrefixWarmup] = {}
_METERS: dict[str, _PrefixCacheMeter] = {}
_SHARED_LOCK = threading.Lock()


def _warmup(identity: GeneratorIdentity, share_token: str) -> PrefixWarmup:
    """One gate per model and process: every bundle of a stage sees which templates are warm."""
    with _SHARED_LOCK:
        return _WARMUPS.setdefault((identity, share_token), PrefixWarmup())


class _PrefixCacheMeter:
    """The server's prefix-cache counters, read after each bundle of real calls: the change
    since the previous reading (by any bundle of this process) is that bundle's. Bundles of
    different stages running at the same time share the server, so the split between them is
    approximate; the sum over stages is exact for this process's server."""

    def __init__(self, base_url: str) -> None:
        self._base_url = base_url
        self._lock = threading.Lock()
        self._last = read_prefix_cache(base_url)

    def delta(self) -> tuple[int, int] | None:
        """(queried, hit) prompt tokens since the previous reading; None if unreadable."""
        with self._lock:
            now, last = read_prefix_cache(self._base_url), self._last
            self._last = now
        if now is None or last is None or now[0] < last[0]:  # none, or a restarted server
            return None
        return now[0] - last[0], now[1] - last[1]


def _meter(base_url: str) -> _PrefixCacheMeter:
    with _SHARED_LOCK:
        meter = _METERS.get(base_url)
        if meter is None:
            meter = _METERS[base_url] = _PrefixCacheMeter(base_url)
        return meter


class _Session:
    """What load_model returns: the cache, and a client bound to an endpoint on first need.

    The endpoint (for `vllm`/`embedded`: a server we start) is only obtained on the first
    cache miss, so a fully cached rerun never starts a server.
    """

    def __init__(self, cfg: GeneratorConfig, identity: GeneratorIdentity,
                 cache: ResponseCache | None, endpoint: str | None, share_token: str,
                 retry_failed: bool = False) -> None:
        self._cfg = cfg
        self.retry_failed = retry_failed  # ask recorded failures again instead of replaying
        self._endpoint = endpoint
        self._share_token = share_token
        self._client: OpenAICompatClient | None = None
        self._no_endpoint: Exception | None = None  # why the endpoint could not be had
        self._lock = threading.Lock()
        self.identity = identity
        self.cache = cache
        self.warmup = _warmup(identity, share_token) if cfg.warms_prefixes else None
        # Our own servers are vLLM: their prefix-cache hit rate is measured per stage.
        self._measure = not BACKENDS[cfg.backend].remote
        self.meter: _PrefixCacheMeter | None = None
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
                    endpoint = self._endpoint or endpoint_for(
                        cfg, self._share_token, self.identity.pin, self.identity.dtype)
                except Exception as exc:
                    self._no_endpoint = exc
                    raise
                api_key = os.environ.get(cfg.api_key_env) if cfg.api_key_env else None
                retry = RetryPolicy(cfg.max_attempts, cfg.backoff_s, cfg.max_backoff_s)
                self._client = OpenAICompatClient(
                    endpoint, self.identity.served_name,
                    api_key=api_key, timeout_s=cfg.timeout_s, retry=retry,
                    timeouts=_timeout_policy(endpoint, self.identity.served_name, cfg))
                if self._measure:
                    self.meter = _meter(endpoint)
            return self._client


class GeneratorModelHandler(ModelHandler[GenerationRequest, PredictionResult, _Session]):
    def __init__(self, cfg: GeneratorConfig, identity: GeneratorIdentity,
                 cache_dir: str | None, *, endpoint: str | None = None,
                 resource_hints: dict[str, str] | None = None,
                 retry_failed: bool = False) -> None:
        """`endpoint` overrides how the URL is obtained (tests point it at their own server).
        `retry_failed`: ask the requests an earlier run failed for good again, instead of
        replaying their failures from the cache (`cache.retry_failed`).

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
        self._retry_failed = retry_failed
        # Workers of this driver's jobs share one server per model and machine; other
        # drivers on the same machine do not (the token is pickled with the handler).
        self._share_token = _DRIVER_TOKEN

    def load_model(self) -> _Session:
        cache = ResponseCache(self._cache_dir) if self._cache_dir else None
        return _Session(self._cfg, self._identity, cache, self._endpoint, self._share_token,
                        self._retry_failed)


    def run_inference(self, batch: Sequence[GenerationRequest], model: _Session,
                      inference_args: dict[str, Any] | None = None
                      ) -> Iterable[PredictionResult]:
        # Early requests only help through the cache; without one they would be thrown away.
        ahead = [a for r in batch for a in r.ahead] if model.cache is not None else []
        # Ahead requests only fill the cache: their failures decide nothing, so none is kept.
        jobs = [(r, True) for r in batch] + [(r, False) for r in ahead]
        everything = list(model.pool.map(lambda job: generate_one(job[0], model,
                                                                  decided=job[1]), jobs))
        outcomes = everything[:len(batch)]
        for outcome in everything:  # counters only work on the bundle's thread, not the pool's
            count_outcome(outcome, caching=model.cache is not None)
        if model.meter is not None and any(not o.cached for o in outcomes):
            measured = model.meter.delta()
            if measured is not None:
                metric("generator", batch[0].stage, "prefix_cache_queries", measured[0])
                metric("generator", batch[0].stage, "prefix_cache_hits", measured[1])
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


def metric(group: str, stage: str, name: str, value: int = 1) -> None:
    """Add `value` to counter `name` in namespace `instructbeam/<group>/<stage>`.

    The one place counters are made: the manifest reads `stage/` and `target/` back for its
    accounting, `generator/` for calls and tokens; other groups are diagnostics. Zero adds
    nothing, so a counter only appears once something happened.
    """
    if value:
        Metrics.counter(f"{NAMESPACE}/{group}/{stage}", name).inc(value)


def count_outcome(outcome: GenerationOutcome, *, caching: bool) -> None:
    """Count one outcome (generator usage and the progress line); call it on the bundle's
    thread: Beam counters made on a pool thread are lost."""
    stage = outcome.request.stage
    completion = outcome.completion
    PROGRESS.add(stage, requests=1, cached=int(outcome.cached),
                 failed=int(completion is None),
                 tokens=0 if completion is None or outcome.cached
                 else completion.completion_tokens)
    metric("generator", stage, "requests")
    if outcome.cached:
        metric("generator", stage, "cache_hits")
        if completion is None:
            metric("generator", stage, "failures_replayed")
        return
    if caching:
        metric("generator", stage, "cache_misses")
    metric("generator", stage, "retries", max(outcome.attempts - 1, 0))
    metric("generator", stage, "timeouts", outcome.timeouts)
    metric("generator", stage, "warmup_waits", int(outcome.held))
    if outcome.completion is None:
        metric("generator", stage, "failed")
        return
    metric("generator", stage, "calls")
    metric("generator", stage, "prompt_tokens", outcome.completion.prompt_tokens)
    metric("generator", stage, "completion_tokens", outcome.completion.completion_tokens)


def request_key(session: _Session, request: GenerationRequest) -> str:
    """The cache key of `request` on this session's generator."""
    identity = session.identity
    return cache_key(identity.model, identity.revision, request, identity.server)


def generate_one(request: GenerationRequest, session: _Session, *,
                 decided: bool = True) -> GenerationOutcome:
    """One request the way every generation step sends it: the response cache first, then the
    client (retries, timeouts); a final failure is an outcome, never an exception. Safe to
    call from many threads (the bootstrap loop calls it from its own pool).

    `decided`: the caller decides on this outcome (a `Generate` step, a follow-up), so a
    failure is recorded in the cache and replayed by a rerun unless the session retries
    failures. The bootstrap loop's prompts pass False (its lane journal records their
    decisions, and an answer that came back beyond the stop decides nothing), as do requests
    sent ahead only to fill the cache."""
    key = request_key(session, request)
    if session.cache is not None:
        hit = session.cache.get(key)
        if hit is not None:
            return GenerationOutcome(request, hit, cached=True, attempts=0)
        if decided and not session.retry_failed:
            failure = session.cache.get_failure(key)
            if failure is not None:
                return failure.replay(request)
    if session.warmup is None:
        return _call(request, session, key, held=False, decided=decided)
    # One template's requests share its prefix: the first goes alone (see PrefixWarmup).
    with session.warmup.turn(warmup_key(request)) as held:
        return _call(request, session, key, held=held, decided=decided)


def _call(request: GenerationRequest, session: _Session, key: str, *,
          held: bool, decided: bool) -> GenerationOutcome:
    try:
        completion, attempts, timeouts = session.client.generate(request)
    except GenerationFailed as exc:
        if decided and session.cache is not None:
            session.cache.put_failure(key, RecordedFailure(exc.kind, str(exc), exc.attempts))
        return GenerationOutcome(request, None, attempts=exc.attempts,
                                 error_class=exc.kind, error_message=str(exc),
                                 timeouts=exc.timeouts, held=held)
    if session.cache is not None:
        # Another run sharing the cache may have answered first: its answer is the one the
        # cache replays from now on, so it is the one this run uses too.
        completion = session.cache.put(key, completion)
        if session.retry_failed:
            session.cache.drop_failure(key)
    return GenerationOutcome(request, completion, attempts=attempts, timeouts=timeouts,
                             held=held)
