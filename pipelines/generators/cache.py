"""Content-addressed response cache on Beam FileSystems (a local directory or gs://).

The key is a hash of everything that determines an answer: model id and revision, API, the
rendered prompt, the sampling parameters and the per-request seed. Entries are written to a
unique temporary name and renamed into place, so a retried bundle, a concurrent worker or a
killed run never leaves a half-written entry; a corrupt entry is treated as a miss.

Beside the answers the cache keeps *decided failures*: a request that failed for good
(retries spent) in a step that decided on it leaves a `<key>.failed` record, so a rerun
replays the failure instead of asking again. Asking again could succeed, and a success where
the first run had a failure changes what every later prompt of a bootstrap sees, so the rerun
would pay for much of the run again and write other data. Failures are only asked again on
request (`cache.retry_failed`, `--retry-failed`). An answer always wins over a failure record
for the same key.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import Any

from apache_beam.io.filesystems import FileSystems

from pipelines.generators.generation import Completion, GenerationRequest, RecordedFailure


def default_cache_dir() -> str:
    root = os.environ.get("INSTRUCTBEAM_CACHE") or str(Path.home() / ".cache" / "instructbeam")
    return FileSystems.join(root, "responses")


def cache_key(model: str, revision: str, request: GenerationRequest) -> str:
    material = {
        "model": model,
        "revision": revision,
        "api": request.api,
        "prompt": request.prompt,
        "sampling": request.sampling,
        "seed": request.seed,
    }
    if request.extra_body:  # only when present, so that older cache keys stay valid
        material["extra_body"] = request.extra_body
    if request.messages:  # likewise: a multi-turn chat request
        material["messages"] = [list(turn) for turn in request.messages]
    blob = json.dumps(material, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


FAILURE_SUFFIX = ".failed"  # not `.json`: counting `*.json` counts answers only


class ResponseCache:
    def __init__(self, root: str) -> None:
        self.root = root

    def _path(self, key: str) -> str:
        return FileSystems.join(self.root, key[:2], f"{key}.json")

    def get(self, key: str) -> Completion | None:
        path = self._path(key)
        try:
            if not FileSystems.exists(path):
                return None
            with FileSystems.open(path, compression_type="uncompressed") as handle:
                data: dict[str, Any] = json.loads(handle.read().decode("utf-8"))
            return Completion(
                text=data["text"],
                finish_reason=data.get("finish_reason"),
                prompt_tokens=int(data.get("prompt_tokens", 0)),
                completion_tokens=int(data.get("completion_tokens", 0)),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def put(self, key: str, completion: Completion) -> None:
        path = self._path(key)
        directory = FileSystems.join(self.root, key[:2])
        if not directory.startswith("gs://"):
            os.makedirs(directory, exist_ok=True)
        tmp = f"{path}.tmp-{uuid.uuid4().hex}"
        body = json.dumps({
            "text": completion.text,
            "finish_reason": completion.finish_reason,
            "prompt_tokens": completion.prompt_tokens,
            "completion_tokens": completion.completion_tokens,
        }, ensure_ascii=False).encode("utf-8")
        with FileSystems.create(tmp, compression_type="uncompressed") as handle:
            handle.write(body)
        FileSystems.rename([tmp], [path])

    # -- decided failures ------------------------------------------------------------------

    def _failure_path(self, key: str) -> str:
        return FileSystems.join(self.root, key[:2], f"{key}{FAILURE_SUFFIX}")

    def get_failure(self, key: str) -> RecordedFailure | None:
        """The failure recorded for `key`, or None (none, or unreadable: asked again)."""
        path = self._failure_path(key)
        try:
            if not FileSystems.exists(path):
                return None
            with FileSystems.open(path, compression_type="uncompressed") as handle:
                data: dict[str, Any] = json.loads(handle.read().decode("utf-8"))
            return RecordedFailure(str(data["error_class"]), str(data["error_message"]),
                                   int(data["attempts"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def put_failure(self, key: str, failure: RecordedFailure) -> None:
        """Record that `key` failed for good (the message is already redacted)."""
        path = self._failure_path(key)
        directory = FileSystems.join(self.root, key[:2])
        if not directory.startswith("gs://"):
            os.makedirs(directory, exist_ok=True)
        tmp = f"{path}.tmp-{uuid.uuid4().hex}"
        body = json.dumps({"error_class": failure.error_class,
                           "error_message": failure.error_message,
                           "attempts": failure.attempts}, ensure_ascii=False).encode("utf-8")
        with FileSystems.create(tmp, compression_type="uncompressed") as handle:
            handle.write(body)
        FileSystems.rename([tmp], [path])

    def drop_failure(self, key: str) -> None:
        """Forget a failure that a retry has answered (the answer would win anyway; this
        keeps the folder honest about what is still failed)."""
        path = self._failure_path(key)
        try:
            if FileSystems.exists(path):
                FileSystems.delete([path])
        except OSError:
            pass
