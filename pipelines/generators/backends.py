"""Generator backends: where a model's endpoint comes from. One `Backend` per way, one dict.

Every request goes to an OpenAI-compatible endpoint; backends differ only in how the model is
named and versioned (`identity`), whether we run its server (`server_settings`, `server_spec`)
and how its base URL is obtained (`endpoint`). `BACKENDS` maps the config's
`generator.backend` value to its implementation; nothing else in the code branches on a
backend name. A new backend is one class here (or in its own module), one line in
`BACKENDS` and its name in `pipelines.settings.Backend` (the config's accepted values, below
this module; a test checks that they agree, remote flags included).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Protocol

from apache_beam.utils.multi_process_shared import MultiProcessShared

from pipelines.generators import embedded, vllm_server
from pipelines.generators.revision import (
    UNVERSIONED,
    Resolution,
    model_folder,
    resolve_vllm,
    without_arg,
)
from pipelines.generators.server_identity import ServerMaterial, server_material
from pipelines.generators.server_settings import (
    ServerSettings,
    checkpoint_dtype,
    choose_server_settings,
    read_machine_facts,
)
from pipelines.outputs.progress import PROGRESS
from pipelines.settings import GeneratorConfig

log = logging.getLogger(__name__)
_WARNED: set[str] = set()


@dataclass(frozen=True)
class GeneratorIdentity:
    """What produced the text: recorded on every row (model, revision) and, with the server's
    setup, part of every cache key."""

    model: str  # provenance id, e.g. HuggingFaceTB/SmolLM2-135M-Instruct
    revision: str
    served_name: str  # the name the endpoint serves it under
    # `vllm` from the Hugging Face cache: the hub commit the server must load, so that the
    # recorded revision is the one that answers (without it vLLM follows `main`).
    pin: str | None = None
    # A server we start: the dtype it computes in, resolved where the run starts (`auto`
    # depends on the machine) and pinned into the server wherever it starts, like `pin`.
    dtype: str | None = None
    # A server we start: its answer-changing arguments (`server_identity`), in the cache key.
    server: ServerMaterial = ()


class Backend(Protocol):
    """One way to reach a model. `remote`: an endpoint someone else runs (it takes
    `base_url` and `revision` in the config); otherwise we start and own a vLLM server."""

    remote: bool

    def identity(self, cfg: GeneratorConfig) -> GeneratorIdentity: ...

    def model_path(self, cfg: GeneratorConfig, settings: ServerSettings) -> str: ...

    def server_settings(self, cfg: GeneratorConfig) -> ServerSettings | None: ...


class OpenAIBackend:
    """An already running OpenAI-compatible endpoint (`base_url`); we never start it."""

    remote = True

    def identity(self, cfg: GeneratorConfig) -> GeneratorIdentity:
        if cfg.revision:
            resolution = Resolution(cfg.revision)
        else:
            resolution = Resolution(UNVERSIONED, warning=(
                f"generator.revision is not set for the openai endpoint's model {cfg.model!r}: "
                "cached answers are reused even after the endpoint serves a new version of it; "
                "set generator.revision to the version it serves"))
        return _identity(cfg, resolution)

    def model_path(self, cfg: GeneratorConfig, settings: ServerSettings) -> str:
        raise AssertionError("the openai backend has no server of ours")

    def server_settings(self, cfg: GeneratorConfig) -> ServerSettings | None:
        return None


class VllmBackend:
    """A Hugging Face model (hub id or local folder) on a vLLM server we start."""

    remote = False

    def identity(self, cfg: GeneratorConfig) -> GeneratorIdentity:
        return _served_by_us(cfg, _identity(cfg, resolve_vllm(cfg.model, cfg.server_args)))

    def model_path(self, cfg: GeneratorConfig, settings: ServerSettings) -> str:
        return cfg.model

    def server_settings(self, cfg: GeneratorConfig) -> ServerSettings | None:
        folder = model_folder(cfg.model, cfg.server_args)
        return _local_settings(cfg, embedded=False, checkpoint=checkpoint_dtype(folder))


class EmbeddedBackend:
    """A small model shipped inside a Python package, converted once and served by vLLM."""

    remote = False

    def identity(self, cfg: GeneratorConfig) -> GeneratorIdentity:
        if cfg.model not in embedded.EMBEDDED_MODELS:
            known = ", ".join(sorted(embedded.EMBEDDED_MODELS))
            raise ValueError(f"unknown embedded model {cfg.model!r} (known: {known})")
        entry = embedded.EMBEDDED_MODELS[cfg.model]
        return _served_by_us(cfg, GeneratorIdentity(
            entry.hf_model_id, embedded.model_revision(cfg.model), cfg.model))

    def model_path(self, cfg: GeneratorConfig, settings: ServerSettings) -> str:
        # The weights are stored in the dtype the server computes in (conversion and serving
        # agree); a dtype we do not convert to (e.g. float16 in server_args) reads the default.
        storage = settings.dtype if settings.dtype in embedded.STORAGE_DTYPES else None
        return str(embedded.materialize(cfg.model, dtype=storage))

    def server_settings(self, cfg: GeneratorConfig) -> ServerSettings | None:
        entry = embedded.EMBEDDED_MODELS.get(cfg.model)
        # vLLM left to itself serves the folder in its storage dtype (see model_path)
        return _local_settings(cfg, embedded=True, checkpoint=entry.dtype if entry else None)


BACKENDS: dict[str, Backend] = {
    "embedded": EmbeddedBackend(),
    "vllm": VllmBackend(),
    "openai": OpenAIBackend(),
}


def _identity(cfg: GeneratorConfig, resolution: Resolution) -> GeneratorIdentity:
    if resolution.warning:
        _warn_once(resolution.warning)
    return GeneratorIdentity(cfg.model, resolution.revision, cfg.model, resolution.pin)


def _served_by_us(cfg: GeneratorConfig, identity: GeneratorIdentity) -> GeneratorIdentity:
    """The identity of a server we start: the dtype this machine resolves (the server is
    pinned to it where it starts) and the server arguments that change an answer."""
    settings = BACKENDS[cfg.backend].server_settings(cfg)
    assert settings is not None
    return replace(identity, dtype=settings.dtype,
                   server=server_material(cfg.server_args, settings.dtype))


def _local_settings(cfg: GeneratorConfig, *, embedded: bool, checkpoint: str | None
                    ) -> ServerSettings:
    return choose_server_settings(read_machine_facts(), embedded=embedded, dtype=cfg.dtype,
                                  cpu_threads=cfg.cpu_threads, server_args=cfg.server_args,
                                  checkpoint=checkpoint)


def _warn_once(message: str) -> None:
    """Identities are resolved more than once per run (validation, then each step)."""
    if message not in _WARNED:
        _WARNED.add(message)
        log.warning(message)


def resolve_identity(cfg: GeneratorConfig) -> GeneratorIdentity:
    return BACKENDS[cfg.backend].identity(cfg)


def server_settings(cfg: GeneratorConfig) -> ServerSettings | None:
    """How this machine runs the generator's server (dtype, CPU threads); None for a remote
    endpoint. Evaluated where the server starts (a Beam worker), so each machine decides."""
    return BACKENDS[cfg.backend].server_settings(cfg)


def server_spec(cfg: GeneratorConfig, pin: str | None = None, dtype: str | None = None
                ) -> vllm_server.ServerSpec:
    """The server a local generator runs on; equal specs share one server.

    A `pin` replaces any `--revision` in `server_args`, and a `dtype` this machine's choice,
    so the server loads exactly the commit and computes in exactly the dtype the rows and
    cache keys name (`GeneratorIdentity.pin`, `.dtype`, resolved where the run started).
    """
    backend = BACKENDS[cfg.backend]
    settings = backend.server_settings(cfg)
    assert settings is not None, "a remote endpoint has no server of ours"
    if dtype is not None and dtype != settings.dtype:
        settings = replace(settings, dtype=dtype, dtype_flag=True,
                           dtype_reason=f"{dtype}: resolved where the run started (cache key)")
    args = tuple(cfg.server_args)
    if settings.extra_args:  # ours replaces one in server_args (`--dtype auto`)
        args = without_arg(args, "--dtype")
    if pin is not None:
        args = (*without_arg(args, "--revision"), "--revision", pin)
    return vllm_server.ServerSpec(
        model=backend.model_path(cfg, settings), served_model_name=cfg.model,
        extra_args=(*args, *settings.extra_args), env=settings.env,
        label=settings.label())


def endpoint_for(cfg: GeneratorConfig, share_token: str = "local", pin: str | None = None,
                 dtype: str | None = None) -> str:
    """Base URL of a server for this generator: an existing one, or one we start and own.

    `pin`, `dtype`: the hub commit and dtype the identity recorded (`GeneratorIdentity`),
    resolved on the driver and handed to the server wherever it starts.
    """
    if BACKENDS[cfg.backend].remote:
        assert cfg.base_url is not None
        return cfg.base_url
    spec = server_spec(cfg, pin, dtype)
    # One server per machine for all SDK worker processes of this job (Dataflow starts one
    # per vCPU; `direct_num_workers` > 1 locally): the first process to ask hosts it.
    tag = f"instructbeam-vllm-{spec.key}-{share_token}"
    shared = MultiProcessShared(lambda: SharedServer(spec), tag=tag, always_proxy=True)
    return shared.acquire().base_url()


class SharedServer:
    """Lives in the process that hosts the shared server; restarts it if it was stopped."""

    def __init__(self, spec: vllm_server.ServerSpec) -> None:
        self._spec = spec

    def base_url(self) -> str:
        return vllm_server.get_or_start(self._spec, on_event=PROGRESS.note).base_url


def served_context(cfg: GeneratorConfig) -> int | None:
    """The context (`--max-model-len`) of a server we start, from its arguments; None for an
    endpoint someone else runs, or when the arguments do not say."""
    if BACKENDS[cfg.backend].remote:
        return None
    args = list(cfg.server_args)
    for i, arg in enumerate(args):
        if arg == "--max-model-len" and i + 1 < len(args) and args[i + 1].isdigit():
            return int(args[i + 1])
        if arg.startswith("--max-model-len=") and arg.split("=", 1)[1].isdigit():
            return int(arg.split("=", 1)[1])
    return None
