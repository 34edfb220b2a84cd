"""Generator requests and outcomes, and the HTTP client that turns one into the other.

One request per element: its own seed, timeout and retry budget, and an outcome that is either
a completion or a failure for that element alone. Transport faults (429, 5xx, timeouts,
connection resets, invalid bodies) are retried with exponential backoff and jitter; a valid
answer is returned as is, even when empty or cut at the length limit (the parser decides).
No Beam here: the ModelHandler in `pipelines.generators.handler` wraps this.
"""

from __future__ import annotations

import functools
import hashlib
import http.client
import json
import random
import select
import socket
import statistics
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

Api = Literal["completions", "chat"]
RETRYABLE_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class GenerationRequest:
    """One call to make. `context` travels through untouched for the stage that parses it."""

    request_id: str
    stage: str
    round: int
    subject_id: str
    prompt: str
    prompt_ref: str
    sampling: dict[str, Any]
    seed: int
    api: Api = "completions"
    context: Any = None
    # Extra top-level request fields (e.g. vLLM's `structured_outputs`); part of the cache key.
    extra_body: dict[str, Any] | None = None
    # Chat only: a whole conversation as (role, content) pairs, sent instead of `prompt` as
    # one user message (a multi-turn assistant turn); part of the cache key.
    messages: tuple[tuple[str, str], ...] | None = None
    # Requests a later step will likely send (Explore-Instruct's next extend attempts): sent
    # alongside this one only to fill the response cache, never parsed here. Not in the key.
    ahead: tuple[GenerationRequest, ...] = ()

    @property
    def prompt_sha256(self) -> str:
        return hashlib.sha256(self.prompt.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Completion:
    text: str
    finish_reason: str | None
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass(frozen=True)
class GenerationOutcome:
    request: GenerationRequest
    completion: Completion | None = None
    cached: bool = False
    attempts: int = 0
    error_class: str | None = None
    error_message: str | None = None
    timeouts: int = 0  # attempts that timed out (retried or final)
    held: bool = False  # waited for the first request of its template (PrefixWarmup)

    @property
    def ok(self) -> bool:
        return self.completion is not None


@dataclass(frozen=True)
class RecordedFailure:
    """A request that failed for good in an earlier run: what a rerun replays instead of
    asking again (pipelines.generators.cache keeps them; a bootstrap lane's journal too)."""

    error_class: str
    error_message: str
    attempts: int

    def replay(self, request: GenerationRequest) -> GenerationOutcome:
        """The outcome as the earlier run decided it (its dead letter is the same bytes);
        `cached`: nothing was asked."""
        return GenerationOutcome(request, None, cached=True, attempts=self.attempts,
                                 error_class=self.error_class,
                                 error_message=self.error_message)

    @classmethod
    def of(cls, outcome: GenerationOutcome) -> RecordedFailure:
        return cls(outcome.error_class or "unknown", outcome.error_message or "",
                   outcome.attempts)


class TransientError(Exception):
    """A transport fault worth retrying."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class PermanentError(Exception):
    """A fault that another attempt would not fix (e.g. HTTP 400)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass
class RetryPolicy:
    max_attempts: int = 4
    backoff_s: float = 1.0
    max_backoff_s: float = 30.0
    rng: random.Random = field(default_factory=random.Random)

    def delay(self, attempt: int) -> float:
        """Full-jitter exponential backoff before attempt `attempt + 1`."""
        cap = min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1))
        return self.rng.uniform(0, cap)


DEFAULT_MAX_TOKENS = 256
"""Assumed answer length for a request that names no max_tokens (only to size its timeout)."""


class TimeoutPolicy:
    """How long one attempt may wait for its answer: ``floor_s``, or longer on a slow server.

    A fixed timeout throws finished work away on a slow machine: every request of a wave
    that needs longer than the timeout is abandoned (vLLM drops it) and sent again, which
    makes the next wave slower still. So the server's speed is measured on the answers that
    arrive (seconds per completion token, including the time a request waits in the server's
    batch, which is what the client sees), and an attempt may take ``margin`` times the
    median of recent measurements times its ``max_tokens``, and at least ``margin`` times the
    median duration of recent answers (short answers to long prompts cost prompt time that
    the per-token figure misses). The limit is re-read while an
    answer is awaited, so requests already in flight profit from the first measurements.
    Each earlier timeout of the same request doubles the limit (before anything is measured,
    a retry must not fail the same way). Never below ``floor_s`` (a hung server is still
    noticed), never above ``cap_s``. ``adaptive=False``: always ``floor_s``.
    """

    def __init__(self, floor_s: float, *, adaptive: bool = True, margin: float = 3.0,
                 cap_s: float = 3600.0, window: int = 32, min_tokens: int = 16) -> None:
        self.floor_s = floor_s
        self.adaptive = adaptive
        self.margin = margin
        self.cap_s = max(cap_s, floor_s)
        self.min_tokens = min_tokens  # shorter answers measure the prompt, not the decoding
        self._seconds_per_token: deque[float] = deque(maxlen=window)
        self._durations: deque[float] = deque(maxlen=window)
        self._lock = threading.Lock()

    def observe(self, completion_tokens: int, seconds: float) -> None:
        """Record one answer: ``completion_tokens`` generated in ``seconds`` (wall time)."""
        if not self.adaptive:
            return
        with self._lock:
            self._durations.append(seconds)
            if completion_tokens >= self.min_tokens:
                self._seconds_per_token.append(seconds / completion_tokens)

    def seconds_per_token(self) -> float | None:
        """The median of recent measurements, or None before the first one."""
        with self._lock:
            recent = list(self._seconds_per_token)
        return statistics.median(recent) if recent else None

    def limit_s(self, max_tokens: int, earlier_timeouts: int = 0) -> float:
        """Seconds one attempt of a request with ``max_tokens`` may wait for its answer."""
        if not self.adaptive:
            return self.floor_s
        limit = self.floor_s
        per_token = self.seconds_per_token()
        if per_token is not None:
            limit = max(limit, self.margin * max_tokens * per_token)
        with self._lock:
            durations = list(self._durations)
        if durations:
            limit = max(limit, self.margin * statistics.median(durations))
        return min(limit * 2 ** earlier_timeouts, self.cap_s)


WARMUP_PREFIX_CHARS = 1024
"""Requests wait for each other only if their prompts agree on this many characters (~250
tokens): a shorter shared prefix costs little to recompute, and a template whose requests
differ early (Self-Instruct's instruction prompt: a short header, then sampled demos) would
only lose its parallelism."""


def warmup_key(request: GenerationRequest) -> tuple[str, int, str, int]:
    """Which requests share a prefix worth waiting for: same stage, round and template, and
    the same first `WARMUP_PREFIX_CHARS` characters (hashed; the gate lives in one process)."""
    return (request.stage, request.round, request.prompt_ref,
            hash(request.prompt[:WARMUP_PREFIX_CHARS]))


class PrefixWarmup:
    """Lets one request per prompt template go first; the others of that template wait for it.

    Requests built from one template share a long prefix (instructions and in-context demos).
    vLLM reuses a prefix's KV cache only once some request has finished computing it, so
    requests that arrive together all miss the cache and each computes the whole prefix.
    Holding the rest of a template until its first request has answered (or failed) lets
    them all hit. Waiting changes only when a request is sent, never what it asks for: each
    request keeps its own seed, and results are keyed by request.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._first: dict[Hashable, threading.Event] = {}  # key -> set once the first is done
        self._warm: set[Hashable] = set()

    @contextmanager
    def turn(self, key: Hashable) -> Iterator[bool]:
        """Run the body when it is this request's turn; yields whether it had to wait.

        The first request of ``key`` runs at once; later ones wait until it has left its
        body (answered or failed); once a key is warm, nobody waits."""
        with self._lock:
            first = self._first.get(key)
            leader = first is None and key not in self._warm
            if leader:
                first = self._first[key] = threading.Event()
        if not leader:
            held = first is not None and not first.is_set()
            if first is not None:
                first.wait()
            yield held
            return
        try:
            yield False
        finally:
            with self._lock:
                self._warm.add(key)
                done = self._first.pop(key)
            done.set()


class _AttemptTimeout(TimeoutError):
    pass


class _WaitingConnection:
    """Waits (``select``) until the answer starts arriving before reading it, so the wait's
    limit can change while it runs; the socket timeout then covers only connect and read."""

    def __init__(self, *args: Any, wait: Callable[[socket.socket | None], None],
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._wait_for_answer = wait

    def getresponse(self) -> http.client.HTTPResponse:
        self._wait_for_answer(self.sock)  # type: ignore[attr-defined]
        return super().getresponse()  # type: ignore[misc]


class _WaitingHTTPConnection(_WaitingConnection, http.client.HTTPConnection):
    pass


class _WaitingHTTPSConnection(_WaitingConnection, http.client.HTTPSConnection):
    pass


_WAITING = {http.client.HTTPConnection: _WaitingHTTPConnection,
            http.client.HTTPSConnection: _WaitingHTTPSConnection}


class _WaitingHandlerMixin:
    _wait: Callable[[socket.socket | None], None]

    def do_open(self, http_class: type, req: urllib.request.Request, **kwargs: Any) -> Any:
        waiting = functools.partial(_WAITING.get(http_class, http_class), wait=self._wait)
        return super().do_open(waiting, req, **kwargs)  # type: ignore[misc]


class _WaitingHTTPHandler(_WaitingHandlerMixin, urllib.request.HTTPHandler):
    def __init__(self, wait: Callable[[socket.socket | None], None]) -> None:
        super().__init__()
        self._wait = wait


class _WaitingHTTPSHandler(_WaitingHandlerMixin, urllib.request.HTTPSHandler):
    def __init__(self, wait: Callable[[socket.socket | None], None]) -> None:
        super().__init__()
        self._wait = wait


def _waiter(started: float, limit: Callable[[], float]) -> Callable[[socket.socket | None],
                                                                   None]:
    def wait(sock: socket.socket | None) -> None:
        while True:
            allowed = limit()
            remaining = started + allowed - time.monotonic()
            if remaining <= 0:
                raise _AttemptTimeout(f"no answer within {allowed:.3g} s")
            if sock is None:
                return
            readable, _, _ = select.select([sock], [], [], min(remaining, 0.5))
            if readable:
                return
    return wait


class OpenAICompatClient:
    """Minimal OpenAI-compatible client (vLLM, providers); the key never leaves the header."""

    def __init__(self, base_url: str, model: str, *, api_key: str | None = None,
                 timeout_s: float = 120.0, retry: RetryPolicy | None = None,
                 timeouts: TimeoutPolicy | None = None) -> None:
        """``timeout_s`` bounds connecting and reading; how long an answer may take to start
        is ``timeouts`` (default: fixed at ``timeout_s``)."""
        self.base_url = base_url.rstrip("/")
        self.model = model
        self._api_key = api_key
        self.timeout_s = timeout_s
        self.retry = retry or RetryPolicy()
        self.timeouts = timeouts or TimeoutPolicy(timeout_s, adaptive=False)

    def generate(self, request: GenerationRequest) -> tuple[Completion, int, int]:
        """Return the completion, the number of attempts and how many of them timed out;
        raise :class:`GenerationFailed` on final failure."""
        attempt = timeouts = 0
        max_tokens = int(request.sampling.get("max_tokens") or DEFAULT_MAX_TOKENS)
        while True:
            attempt += 1
            started = time.monotonic()
            limit = functools.partial(self.timeouts.limit_s, max_tokens, timeouts)
            try:
                completion = self._once(request, _waiter(started, limit))
            except TransientError as exc:
                timeouts += exc.kind == "timeout"
                if attempt >= self.retry.max_attempts:
                    raise GenerationFailed(exc.kind, self._redact(str(exc)), attempt,
                                           timeouts) from None
                time.sleep(self.retry.delay(attempt))
                continue
            except PermanentError as exc:
                raise GenerationFailed(exc.kind, self._redact(str(exc)), attempt,
                                       timeouts) from None
            self.timeouts.observe(completion.completion_tokens, time.monotonic() - started)
            return completion, attempt, timeouts

    def _redact(self, message: str) -> str:
        if self._api_key:
            message = message.replace(self._api_key, "***")
        return message[:500]

    def _once(self, request: GenerationRequest,
              wait: Callable[[socket.socket | None], None] | None = None) -> Completion:
        body: dict[str, Any] = {"model": self.model, "seed": request.seed, **request.sampling,
                                **(request.extra_body or {})}
        if request.api == "chat":
            turns = request.messages or (("user", request.prompt),)
            body["messages"] = [{"role": role, "content": content} for role, content in turns]
            url = f"{self.base_url}/chat/completions"
        else:
            body["prompt"] = request.prompt
            url = f"{self.base_url}/completions"
        payload = self._post(url, body, wait)
        return _parse_completion(payload, request.api)

    def _post(self, url: str, body: dict[str, Any],
              wait: Callable[[socket.socket | None], None] | None = None) -> Any:
        headers = {"Content-Type": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        data = json.dumps(body).encode("utf-8")
        req = urllib.request.Request(url, data=data, headers=headers, method="POST")
        opener = (urllib.request.build_opener() if wait is None else
                  urllib.request.build_opener(_WaitingHTTPHandler(wait),
                                              _WaitingHTTPSHandler(wait)))
        try:
            with opener.open(req, timeout=self.timeout_s) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:200].decode("utf-8", "replace")
            kind = f"http_{exc.code}"
            if exc.code in RETRYABLE_STATUS:
                raise TransientError(kind, f"HTTP {exc.code}: {detail}") from None
            raise PermanentError(kind, f"HTTP {exc.code}: {detail}") from None
        except _AttemptTimeout as exc:
            raise TransientError("timeout", str(exc)) from None
        except TimeoutError:
            raise TransientError("timeout", f"no answer within {self.timeout_s:g} s") from None
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, TimeoutError | socket.timeout):
                raise TransientError("timeout", f"no answer within {self.timeout_s:g} s") from None
            raise TransientError("connection_error", f"{exc.reason}") from None
        except (ConnectionError, http.client.HTTPException, OSError) as exc:
            raise TransientError("connection_error", f"{type(exc).__name__}: {exc}") from None
        try:
            return json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise TransientError("invalid_body", f"not JSON: {raw[:120]!r}") from None


class GenerationFailed(Exception):
    def __init__(self, kind: str, message: str, attempts: int, timeouts: int = 0) -> None:
        super().__init__(message)
        self.kind = kind
        self.attempts = attempts
        self.timeouts = timeouts


def _parse_completion(payload: Any, api: Api) -> Completion:
    try:
        choice = payload["choices"][0]
        text = choice["message"]["content"] if api == "chat" else choice["text"]
        if not isinstance(text, str):
            text = "" if text is None else str(text)
        usage = payload.get("usage") or {}
        return Completion(
            text=text,
            finish_reason=choice.get("finish_reason"),
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
        )
    except (KeyError, IndexError, TypeError, AttributeError, ValueError):
        raise TransientError("invalid_body", f"unexpected response shape: {str(payload)[:120]}"
                             ) from None
