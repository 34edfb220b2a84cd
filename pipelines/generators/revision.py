"""Which weights a `vllm` generator runs: the revision on every row and in every cache key.

A model name alone does not identify an answer: a hub repository moves when its `main` branch
gets a new commit, and a local directory changes when its weights are replaced. The response
cache keys on the revision, so a revision that stays the same across such a change would
serve old answers for the new model. Everything here is read from this machine's files, with
no network access:

- a hub id (``org/name``) resolves to the commit of the snapshot the Hugging Face cache holds
  for it (``refs/<branch>``, or the only snapshot), in the cache vLLM downloads into
  (``--download-dir``, else ``HF_HUB_CACHE``/``HF_HOME``). A commit given as ``--revision``
  in ``server_args`` is taken as is.
- a local model directory resolves to a fingerprint of its files: the full content of small
  files (configs, tokenizer settings, chat templates) and the path, size and modification
  time of large ones (weights). Hashing gigabytes of weights would add minutes to every run
  start; a weight file that is replaced or touched changes its size or mtime, which makes the
  next run miss the cache (a miss costs time, never correctness).
- a hub id that is not in the local cache cannot be pinned without the hub: it resolves to
  ``unresolved:<id>`` with a warning that says how to pin it. vLLM may still download it when
  the server starts, and the next run then resolves the downloaded commit.

The functions are pure apart from reading the file system; the caller logs the warnings.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

# A file this small is hashed by content; a larger one (weights) by path, size and mtime.
CONTENT_HASH_MAX_BYTES = 1 << 20
UNVERSIONED = "unversioned"
_COMMIT = re.compile(r"[0-9a-f]{40}")


@dataclass(frozen=True)
class Resolution:
    """A revision, the hub commit vLLM must load for it to be true, and what to warn about."""

    revision: str
    pin: str | None = None  # a hub commit to pass as vLLM's --revision (None: nothing to pin)
    warning: str | None = None


def server_arg(args: Sequence[str], flag: str) -> str | None:
    """The value of `flag` in vLLM server arguments (`--flag value` or `--flag=value`)."""
    value = None
    for i, arg in enumerate(args):
        if arg == flag and i + 1 < len(args):
            value = args[i + 1]
        elif arg.startswith(flag + "="):
            value = arg[len(flag) + 1:]
    return value  # the last one wins, as with argparse


def without_arg(args: Sequence[str], flag: str) -> tuple[str, ...]:
    """Server arguments with every `flag` (and its value) removed."""
    out: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg == flag:
            skip = True
        elif not arg.startswith(flag + "="):
            out.append(arg)
    return tuple(out)


def hub_cache_dir(env: Mapping[str, str] = os.environ) -> Path:
    """Where huggingface_hub (and so vLLM) keeps downloaded repositories, by its own rules."""
    hub = env.get("HF_HUB_CACHE") or env.get("HUGGINGFACE_HUB_CACHE")
    if hub:
        return Path(hub).expanduser()
    home = env.get("HF_HOME") or os.path.join(env.get("XDG_CACHE_HOME") or "~/.cache",
                                              "huggingface")
    return Path(home).expanduser() / "hub"


def hub_commit(repo_id: str, cache_dir: Path, ref: str = "main") -> str | None:
    """The commit of `repo_id` at `ref` in a Hugging Face cache directory, if it is there.

    The cache stores ``models--org--name/refs/<ref>`` (a file holding the commit) and
    ``snapshots/<commit>/``. A ref that is itself a commit names its snapshot directly. With
    no ref file, a single snapshot is unambiguous (a download of a pinned commit); several
    are not.
    """
    repo = cache_dir / ("models--" + repo_id.replace("/", "--"))
    snapshots = repo / "snapshots"
    if _COMMIT.fullmatch(ref):
        return ref if (snapshots / ref).is_dir() else None
    try:
        commit = (repo / "refs" / ref).read_text(encoding="utf-8").strip()
    except OSError:
        commit = ""
    if _COMMIT.fullmatch(commit) and (snapshots / commit).is_dir():
        return commit
    if ref != "main" or commit:
        return None
    try:
        found = [p.name for p in snapshots.iterdir() if p.is_dir() and _COMMIT.fullmatch(p.name)]
    except OSError:
        return None
    return found[0] if len(found) == 1 else None


def directory_fingerprint(model_dir: Path) -> str:
    """A hash that changes when any file of a model directory is added, removed or changed.

    Small files count by content; large ones by relative path, size and mtime (see the
    module docstring for why not by content). Hidden files and directories (``.cache``,
    ``.git``) are skipped: tools write there without changing the model.
    """
    digest = hashlib.sha256()
    for root, dirs, files in os.walk(model_dir, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(f for f in files if not f.startswith(".")):
            path = Path(root, name)
            rel = path.relative_to(model_dir).as_posix()
            try:
                stat = path.stat()  # follows symlinks: an HF snapshot links into its blobs
                content = path.read_bytes() if stat.st_size <= CONTENT_HASH_MAX_BYTES else (
                    f"mtime={stat.st_mtime_ns}".encode())
            except OSError as exc:  # a dangling link: vLLM reports it, we only must not crash
                digest.update(f"{rel}\0unreadable:{exc.errno}\n".encode())
                continue
            digest.update(f"{rel}\0{stat.st_size}\0".encode() + content + b"\n")
    return digest.hexdigest()[:16]


def looks_like_path(model: str) -> bool:
    """A name vLLM would treat as a directory, never as a hub id."""
    return model.startswith(("/", "./", "../", "~")) or model.count("/") > 1


def _hub_cache(server_args: Sequence[str], env: Mapping[str, str]) -> Path:
    download_dir = server_arg(server_args, "--download-dir")
    return Path(download_dir).expanduser() if download_dir else hub_cache_dir(env)


def model_folder(model: str, server_args: Sequence[str],
                 env: Mapping[str, str] = os.environ) -> Path | None:
    """The folder vLLM loads a `vllm` generator's model from, if it is on this machine: the
    directory itself, or the Hugging Face cache's snapshot of the commit it resolves to."""
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    if looks_like_path(model):
        return None
    cache_dir = _hub_cache(server_args, env)
    commit = hub_commit(model, cache_dir, server_arg(server_args, "--revision") or "main")
    if commit is None:
        return None
    return cache_dir / ("models--" + model.replace("/", "--")) / "snapshots" / commit


def resolve_vllm(model: str, server_args: Sequence[str],
                 env: Mapping[str, str] = os.environ) -> Resolution:
    """The revision of the model a `vllm` generator serves, from this machine's files only."""
    path = Path(model).expanduser()
    if path.is_dir():
        return Resolution(f"dir-sha256:{directory_fingerprint(path)}")
    unresolved = f"unresolved:{model}"
    if looks_like_path(model):
        return Resolution(unresolved, warning=(
            f"generator model {model!r} is not a directory on this machine; its revision is "
            f"recorded as {unresolved!r} and cached answers cannot tell its versions apart"))
    ref = server_arg(server_args, "--revision") or "main"
    cache_dir = _hub_cache(server_args, env)
    commit = hub_commit(model, cache_dir, ref)
    if commit is not None:
        return Resolution(commit, pin=commit)
    if _COMMIT.fullmatch(ref):  # pinned by the user: vLLM downloads exactly this commit
        return Resolution(ref, pin=ref)
    return Resolution(unresolved, warning=(
        f"generator model {model!r} (revision {ref!r}) is not in the Hugging Face cache "
        f"{cache_dir}; its revision is recorded as {unresolved!r}, so cached answers cannot "
        f"tell its versions apart. Pin it: download it first (`hf download {model}`) or put "
        f"`--revision <commit>` in generator.server_args"))
