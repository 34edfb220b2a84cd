"""Generator requests and outcomes, and the HTTP client that turns one into the other.

One request per element: its own seed, timeout and retry budget, and an outcome that is either
a completion or a failure for that element alone. Transport faults (429, 5xx, timeouts,
connection resets, invalid bodies) are retried with exponential backoff and jitter; a valid
answer is returned as is, even when empty or cut at the length limit (the parser decides).
No Beam here: the ModelHandler in `pipelines.handler` wraps this.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import random
import socket
import time
import urllib.error
import urllib.request
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

    @property
    def ok(self) -> bool:
        return self.completion is not None


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


class OpenAICompatClient:
    """Minimal OpenAI-compatible client (vLLM, providers); the key never leaves the header."""

    def __init__(self, base_url: str, model: str, *, api_key: str | None = None,
                 timeout_s: float = 120.0, retry: RetryPolicy | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self._api_key = api_key
        self.timeout_s = timeout_s
        self.retry = retry or RetryPolicy()

    def generate(self, request: GenerationRequest) -> tuple[Completion, int]:
        """Return the completion and the number of attempts it took; raise on final failure."""
        attempt = 0
        while True:
            attempt += 1
            try:
                return self._once(request), attempt
            except TransientError as exc:
                if attempt >= self.retry.max_attempts:
                    raise GenerationFailed(exc.kind, self._redact(str(exc)), attempt) from None
                time.sleep(self.retry.delay(attempt))
            except PermanentError as exc:
                raise GenerationFailed(exc.kind, self._redact(str(exc)), attempt) from None

    def _redact(self, message: str) -> str:
        if self._api_key:
            message = message.replace(self._api_key, "***")
        return message[:500]

    def _once(self, request: GenerationRequest) -> Completion:
        body: dict[str, Any] = {"model": self.model, "seed": request.seed, **request.sampling,
                                **(request.extra_body or {})}
        if request.api == "chat":
            body["messages"] = [{"role": "user", "content": request.prompt}]
            url = f"{self.base_url}/chat/completions"
        else:
            body["prompt"] = request.prompt
            url = f"{self.base_url}/completions"
        payload = self._post(url, body)
        return _parse_completion(payload, request.api)

    def _post(self, url: str, body: dict[str, Any]) -> Any:
        headers = {"Content-Type": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        data = json.dumps(body).encode("utf-8")
        req = urllib.request.Request(url, data=data, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:200].decode("utf-8", "replace")
            kind = f"http_{exc.code}"
            if exc.code in RETRYABLE_STATUS:
                raise TransientError(kind, f"HTTP {exc.code}: {detail}") from None
            raise PermanentError(kind, f"HTTP {exc.code}: {detail}") from None
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
    def __init__(self, kind: str, message: str, attempts: int) -> None:
        super().__init__(message)
        self.kind = kind
        self.attempts = attempts


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
