"""Content-addressed response cache on Beam FileSystems (a local directory or gs://).

The key is a hash of everything that determines an answer: model id and revision, the server
setup that changes answers (dtype, chat template, tokenizer, ...: `server_identity`), API, the
rendered prompt, the sampling parameters and the per-request seed. Entries are written to a
unique temporary name and moved into place, so a retried bundle, a concurrent worker or a
killed run never leaves a half-written entry; a corrupt entry is treated as a miss. The first
answer stored for a key wins: two runs sharing a cache that both ask the same request both
use that answer, the one every later run replays.

Beside the answers the cache keeps *decided failures*: a request that failed for good
(retries spent) in a step that decided on it leaves a `<key>.failed` record, so a rerun
replays the failure instead of asking again. Asking again could succeed, and a success where
the first run had a failure changes what every later prompt of a bootstrap sees, so the rerun
would pay for much of the run again and write other data. Failures are only asked again on
request (`cache.retry_failed`, `--retry-failed`). An answer always wins over a failure record
for the same key.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from apache_beam.io.filesystems import FileSystems

from pipelines.generators.generation import Completion, GenerationRequest, RecordedFailure


def default_cache_dir() -> str:
    root = os.environ.get("INSTRUCTBEAM_CACHE") or str(Path.home() / ".cache" / "instructbeam")
    return FileSystems.join(root, "responses")


def cache_key(model: str, revision: str, request: GenerationRequest,
              server: Sequence[Sequence[str]] = ()) -> str:
    """The key of one request's answer.

    `server`: `GeneratorIdentity.server`, the setup of a server we start that changes an
    answer; it always holds at least the dtype, so keys made before it was in the key (which
    could not tell one setup from another) are never reused for such a server. An endpoint
    someone else runs has none: its keys are the ones it always had.
    """
    material: dict[str, Any] = {
        "model": model,
        "revision": revision,
        "api": request.api,
        "prompt": request.prompt,
        "sampling": request.sampling,
        "seed": request.seed,
    }
    if server:  # only when present, like the fields below
        material["server"] = [list(entry) for entry in server]
    if request.extra_body:  # only when present, so that older cache keys stay valid
        material["extra_body"] = request.extra_body
    if request.messages:  # likewise: a multi-turn chat request
        material["messages"] = [list(turn) for turn in request.messages]
    blob = json.dumps(material, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


FAILURE_SUFFIX = ".failed"  # not `.json`: counting `*.json` counts answers only


def _read_json(path: str) -> Any:
    """The JSON an entry holds, or None when there is none (a bad one raises ValueError)."""
    if not FileSystems.exists(path):
        return None
    with FileSystems.open(path, compression_type="uncompressed") as handle:
        return json.loads(handle.read().decode("utf-8"))


class ResponseCache:
    def __init__(self, root: str) -> None:
        self.root = root

    def _path(self, key: str) -> str:
        return FileSystems.join(self.root, key[:2], f"{key}.json")

    def get(self, key: str) -> Completion | None:
        try:
            data = _read_json(self._path(key))
            if data is None:
                return None
            return Completion(
                text=data["text"],
                finish_reason=data.get("finish_reason"),
                prompt_tokens=int(data.get("prompt_tokens", 0)),
                completion_tokens=int(data.get("completion_tokens", 0)),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def put(self, key: str, completion: Completion) -> Completion:
        """Store `completion` unless the key already holds a valid answer; return the answer
        the cache holds afterwards (the first one stored wins, never silently overwritten).

        A local folder is race-free: the entry is written to a temporary name and hard-linked
        to its final name, which fails if that name exists, so two runs, threads or workers
        racing on one key all get the one answer that won. On gs:// (any `scheme://`) Beam
        offers no create-if-absent, so it is check-then-write: two writers that both find the
        key empty in the same moment each keep their own answer and the later write becomes
        the entry (rare, and never a half-written one). A local file system without hard
        links falls back to the same.
        """
        existing = self.get(key)
        if existing is not None:
            return existing
        path = self._path(key)
        body = json.dumps({
            "text": completion.text,
            "finish_reason": completion.finish_reason,
            "prompt_tokens": completion.prompt_tokens,
            "completion_tokens": completion.completion_tokens,
        }, ensure_ascii=False).encode("utf-8")
        tmp = f"{path}.tmp-{uuid.uuid4().hex}"
        if "://" in path:
            with FileSystems.create(tmp, compression_type="uncompressed") as handle:
                handle.write(body)
            FileSystems.rename([tmp], [path])
            return completion
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(tmp, "wb") as handle:
            handle.write(body)
        try:
            os.link(tmp, path)  # creates the name only if it is absent: the first link wins
            return completion
        except FileExistsError:
            winner = self.get(key)
            if winner is not None:
                return winner
            os.replace(tmp, path)  # the name holds a corrupt entry (a miss for get)
        except OSError:  # a file system without hard links: check-then-write, as on gs://
            os.replace(tmp, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        return self.get(key) or completion

    # -- decided failures ------------------------------------------------------------------

    def _failure_path(self, key: str) -> str:
        return FileSystems.join(self.root, key[:2], f"{key}{FAILURE_SUFFIX}")

    def get_failure(self, key: str) -> RecordedFailure | None:
        """The failure recorded for `key`, or None (none, or unreadable: asked again)."""
        try:
            data = _read_json(self._failure_path(key))
            if data is None:
                return None
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
