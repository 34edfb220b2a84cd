"""Which vLLM server arguments change an answer: the part of a server's setup in every cache key.

The response cache replays an answer for a request whose key matches, so the key must change
whenever the server would answer differently: another chat template, tokenizer, quantization,
generation config, LoRA adapter, context length, dtype or seed. `NEUTRAL_ARGS` is the one
place that lists the arguments that cannot change an answer (where the server listens, what
it logs, how much memory it takes, how it batches and caches prefixes: vLLM's answers do not
depend on which other requests share a batch, so neither do ours). Every other argument is
part of the key, including one nobody has classified yet (a new vLLM flag): a needless cache
miss costs time, a wrong replay costs correctness. `ANSWER_ARGS` lists the ones known to
matter and says how their value is read: a path by the content of what it names, so an
edited chat template or retrained adapter misses the cache and a moved one does not.

Everything here runs where the run starts (the driver), from its files; standard library
only.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path

from pipelines.generators.revision import directory_fingerprint

ServerMaterial = tuple[tuple[str, ...], ...]
"""Sorted ``(flag, *values)`` entries: hashable, so it can sit in a frozen identity."""


def as_given(value: str) -> str:
    return value


def by_content(value: str) -> str:
    """A file or folder by what it holds; anything else (a hub id, an inline chat template,
    ``auto``) as given."""
    path = Path(value).expanduser()
    try:
        if path.is_file():
            return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
        if path.is_dir():
            return "dir-sha256:" + directory_fingerprint(path)
    except OSError as exc:  # unreadable: the server will say why; the key must still differ
        return f"unreadable:{value}:{exc.errno}"
    return value


def lora_by_content(value: str) -> str:
    """One ``--lora-modules`` entry: ``name=path`` or a JSON object with ``path``; the name
    stays (requests pick an adapter by it), the path counts by content."""
    name, sep, path = value.partition("=")
    if not value.lstrip().startswith("{"):
        return f"{name}={by_content(path)}" if sep else by_content(value)
    try:
        module = json.loads(value)
    except ValueError:
        return value
    if isinstance(module, dict) and isinstance(module.get("path"), str):
        module["path"] = by_content(module["path"])
    return json.dumps(module, sort_keys=True)


ANSWER_ARGS: dict[str, Callable[[str], str]] = {
    # what the prompt becomes before the model sees it
    "--chat-template": by_content,
    "--chat-template-content-format": as_given,
    "--default-chat-template-kwargs": as_given,
    "--tokenizer": by_content,
    "--tokenizer-revision": as_given,
    "--tokenizer-mode": as_given,
    "--max-model-len": as_given,  # a longer prompt is cut or refused
    # the weights and how they are computed
    "--revision": as_given,
    "--code-revision": as_given,
    "--hf-config-path": by_content,
    "--hf-overrides": as_given,
    "--trust-remote-code": as_given,
    "--load-format": as_given,
    "--quantization": as_given,
    "--quantization-config": as_given,
    "--dtype": as_given,
    "--kv-cache-dtype": as_given,
    "--enable-lora": as_given,
    "--lora-modules": lora_by_content,
    "--lora-dtype": as_given,
    # how tokens are picked and what comes back
    "--seed": as_given,
    "--generation-config": by_content,
    "--override-generation-config": as_given,
    "--structured-outputs-config": as_given,
    "--logits-processors": as_given,
    "--reasoning-parser": as_given,
    "--config": by_content,  # a YAML file of further arguments
}
"""Arguments known to change an answer, and how each value enters the key. An argument in
neither this nor `NEUTRAL_ARGS` enters the key as given."""

NEUTRAL_ARGS: frozenset[str] = frozenset({
    # where the server listens and who may call it
    "--host", "--port", "--uds", "--root-path", "--api-key", "--api-server-count", "--headless",
    "--allow-credentials", "--allowed-origins", "--allowed-methods", "--allowed-headers",
    "--ssl-keyfile", "--ssl-certfile", "--ssl-ca-certs", "--ssl-cert-reqs", "--ssl-ciphers",
    "--enable-ssl-refresh", "--disable-fastapi-docs", "--enable-offline-docs",
    "--enable-request-id-headers", "--h11-max-incomplete-event-size", "--h11-max-header-count",
    "--sse-keep-alive-interval", "--served-model-name", "--shutdown-timeout",
    # logging, metrics and usage reporting
    "--uvicorn-log-level", "--disable-uvicorn-access-log", "--disable-access-log-for-endpoints",
    "--log-level", "--logging-config", "--log-config-file", "--max-log-len",
    "--enable-log-requests", "--enable-log-outputs", "--enable-log-deltas", "--log-error-stack",
    "--disable-log-stats", "--aggregate-engine-logging", "--show-hidden-metrics-for-version",
    "--otlp-traces-endpoint", "--collect-detailed-traces", "--kv-cache-metrics",
    "--kv-cache-metrics-sample", "--cudagraph-metrics", "--enable-mfu-metrics",
    "--enable-logging-iteration-details", "--custom-histogram-buckets",
    "--enable-server-load-tracking", "--enable-force-include-usage",
    "--enable-prompt-tokens-details", "--enable-per-request-metrics",
    "--enable-tokenizer-info-endpoint",
    # where the weights are read from (the revision names them) and how fast
    "--download-dir", "--hf-token", "--use-tqdm-on-load", "--max-parallel-loading-workers",
    "--safetensors-load-strategy", "--safetensors-prefetch-num-threads",
    "--safetensors-prefetch-block-size",
    # memory
    "--gpu-memory-utilization", "--kv-cache-memory-bytes", "--num-gpu-blocks-override",
    "--swap-space", "--cpu-offload-gb", "--enable-sleep-mode", "--max-loras", "--max-cpu-loras",
    "--max-lora-rank", "--max-logprobs",
    # threads, batching, scheduling, prefix caching, graph capture
    "--enforce-eager", "--max-cudagraph-capture-size", "--cudagraph-capture-sizes",
    "--max-num-seqs", "--max-num-batched-tokens", "--max-num-scheduled-tokens",
    "--max-num-queued-reqs", "--max-num-queued-tokens", "--enable-chunked-prefill",
    "--long-prefill-token-threshold", "--scheduling-policy", "--async-scheduling",
    "--stream-interval", "--enable-prefix-caching", "--prefix-caching-hash-algo",
    "--renderer-num-workers", "--numa-bind", "--numa-bind-nodes", "--numa-bind-cpus",
})
"""Arguments that cannot change an answer: never in the key."""

ALIASES: dict[str, str] = {"-q": "--quantization", "-asc": "--api-server-count",
                           "--device-memory-utilization": "--gpu-memory-utilization"}
DTYPE_ALIASES: dict[str, str] = {"half": "float16", "float": "float32"}


def parse_args(args: Sequence[str]) -> list[tuple[str, tuple[str, ...]]]:
    """``(flag, values)`` in order: ``--flag=value``, ``--flag value...`` or a bare switch.

    Every token up to the next flag is a value (``--lora-modules a=x b=y``). Flags are spelled
    as vLLM reads them: ``_`` in the name as ``-``, short aliases as their long name.
    """
    parsed: list[tuple[str, list[str]]] = []
    for arg in args:
        if _is_flag(arg):
            flag, sep, value = arg.partition("=")
            parsed.append((_canonical(flag), [value] if sep else []))
        elif parsed:
            parsed[-1][1].append(arg)
        else:  # a value before any flag (never in our server_args): keep it in the key
            parsed.append(("", [arg]))
    return [(flag, tuple(values)) for flag, values in parsed]


def classify(flag: str) -> str:
    """``neutral``, ``answer`` (listed) or ``unknown`` (treated as ``answer``)."""
    name = _registered_name(flag)
    if name in NEUTRAL_ARGS:
        return "neutral"
    return "answer" if name in ANSWER_ARGS else "unknown"


def server_material(args: Sequence[str], dtype: str | None) -> ServerMaterial:
    """What of a server's setup changes an answer, for the cache key.

    ``dtype`` is the one the server computes in, resolved where the run starts and pinned
    into the server (`pipelines.generators.backends.server_spec`); a ``--dtype`` in ``args``
    is replaced by it.
    """
    entries: list[tuple[str, ...]] = []
    for flag, values in parse_args(args):
        if classify(flag) == "neutral" or flag == "--dtype":
            continue
        read = ANSWER_ARGS.get(_registered_name(flag), as_given)
        entries.append((flag, *map(read, values)))
    if dtype is not None:
        entries.append(("--dtype", DTYPE_ALIASES.get(dtype, dtype)))
    return tuple(sorted(entries, key=lambda entry: entry[0]))  # stable: repeats keep order


def _is_flag(arg: str) -> bool:
    if not arg.startswith("-") or len(arg) < 2:
        return False
    try:
        float(arg)  # a negative number is a value
    except ValueError:
        return True
    return False


def _canonical(flag: str) -> str:
    flag = ALIASES.get(flag, flag)
    if not flag.startswith("--"):
        return flag
    name, dot, path = flag.partition(".")
    return name.replace("_", "-") + dot + path


def _registered_name(flag: str) -> str:
    """The name a flag is listed under: ``--hf-overrides.rope_theta`` is ``--hf-overrides``,
    ``--no-enable-prefix-caching`` the off switch of ``--enable-prefix-caching``."""
    name = flag.partition(".")[0]
    if name.startswith("--no-") and "--" + name[5:] in NEUTRAL_ARGS.union(ANSWER_ARGS):
        return "--" + name[5:]
    return name
