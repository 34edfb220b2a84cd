"""How a local vLLM server is set up on this machine: its dtype and the CPUs its threads use.

vLLM's CPU build makes two choices that cost small machines most of their speed. A reviewer
measured, on a quiet 2-core AVX2 machine (no native bf16), SmolLM2-135M decoding 32 streams:
26 tok/s with vLLM's defaults, 48 tok/s with its OpenMP threads on both cores, 162 tok/s with
float32 on both cores.

* dtype: for a float32 (or unspecified) checkpoint, ``--dtype auto`` on x86 picks bfloat16
  whatever the CPU (``vllm/config/model.py: _resolve_auto_dtype`` takes the first of the
  platform's supported dtypes). Without native bf16 arithmetic (x86 ``avx512_bf16`` or
  ``amx_bf16``, aarch64 ``bf16``) every matmul converts to float32 and back; float32 is then
  ~3x faster. With native bf16, bfloat16 is the faster choice and halves memory. Where the
  machine does not decide (a model of your own, or not vLLM's CPU build), ``auto`` is made
  explicit by vLLM's own rule (:func:`vllm_auto_dtype`): the dtype is part of every cache key,
  and the server must compute in the dtype its key names, whatever machine it starts on.
* threads: ``VLLM_CPU_OMP_THREADS_BIND=auto`` (``vllm/utils/ompmultiprocessing.py``) binds one
  OpenMP thread per physical core of the first NUMA node and then *reserves* one core for the
  scheduler process, which leaves one of two cores idle. An explicit CPU list is used as is:
  no core is reserved, so ``VLLM_CPU_NUM_OF_RESERVED_CPU`` is not needed (vLLM reads it only
  for the automatic binding and warns when it is below its minimum). On bigger machines the
  automatic binding is kept: one reserved core costs little there, and it knows about NUMA
  nodes and hyper-threads.

The choice is a pure function of :class:`MachineFacts` (tested with fake ``/proc/cpuinfo``
text); :func:`read_machine_facts` collects them. Standard library only: the CLI, Beam workers
and the manifest use it.
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
import os
import platform
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
"""x86 ``/proc/cpuinfo`` flags for bf16 arithmetic in hardware (AVX512-BF16, AMX)."""
AARCH64_BF16_FEATURE = "bf16"
"""aarch64 ``/proc/cpuinfo`` Features entry for FEAT_BF16."""
SMALL_MACHINE_CPUS = 4
"""Up to this many CPUs, every one runs a vLLM thread: the core vLLM would reserve for its
scheduler is at least a quarter of the machine. Measured on 2 cores: 1.85x (reviewer, quiet,
bf16 emulated), 1.3-1.4x (AMX machine, quiet, bf16 and float32), but about 0.5x while other
processes kept the cores busy (OpenMP threads then wait for each other); such machines can set
``VLLM_CPU_OMP_THREADS_BIND=auto`` or ``generator.cpu_threads``."""
BIND_ENV = "VLLM_CPU_OMP_THREADS_BIND"
DTYPES = ("float32", "bfloat16")


@dataclass(frozen=True)
class MachineFacts:
    """What the server settings depend on."""

    arch: str  # platform.machine(): x86_64, aarch64, ...
    cpu_flags: frozenset[str]  # /proc/cpuinfo "flags" (x86) or "Features" (aarch64)
    cpus: tuple[int, ...]  # the CPUs this process may run on (os.sched_getaffinity)
    vllm_cpu_build: bool  # the installed vLLM is its CPU build (the only one these env vars touch)


def parse_cpu_flags(cpuinfo: str) -> frozenset[str]:
    """The CPU feature flags of the first processor in ``/proc/cpuinfo`` text."""
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() in ("flags", "features"):
            return frozenset(value.split())
    return frozenset()


def _vllm_is_cpu_build() -> bool:
    try:
        importlib.metadata.version("vllm-cpu")
        return True
    except importlib.metadata.PackageNotFoundError:
        pass
    try:
        return "cpu" in importlib.metadata.version("vllm")  # a source build: "0.x.y+cpu"
    except importlib.metadata.PackageNotFoundError:
        return False


@functools.cache
def read_machine_facts() -> MachineFacts:
    """This machine's facts (read once per process)."""
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        cpuinfo = ""
    try:
        cpus = tuple(sorted(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        cpus = tuple(range(os.cpu_count() or 1))
    return MachineFacts(platform.machine().lower(), parse_cpu_flags(cpuinfo), cpus,
                        _vllm_is_cpu_build())


def format_cpu_list(cpus: Sequence[int]) -> str:
    """``[0, 1, 2, 5]`` -> ``"0-2,5"`` (the syntax of VLLM_CPU_OMP_THREADS_BIND)."""
    parts: list[str] = []
    ordered = sorted(set(cpus))
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        parts.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(parts)


def vllm_auto_dtype(checkpoint: str | None) -> str:
    """What vLLM's ``--dtype auto`` computes in on a Linux x86/aarch64 CPU or a GPU with bf16
    (compute capability 8.0+): a 16-bit checkpoint's own dtype, bfloat16 for a float32 or
    unknown one (``vllm/config/model.py: _resolve_auto_dtype``, the platform's first supported
    dtype). An older GPU refuses bfloat16 when it is named: set ``generator.dtype`` there."""
    return checkpoint if checkpoint in ("float16", "bfloat16") else "bfloat16"


def checkpoint_dtype(folder: Path | None) -> str | None:
    """The dtype a Hugging Face model folder's ``config.json`` declares (``torch_dtype``, or
    ``dtype`` since transformers 5; a multimodal model's in ``text_config``), if any."""
    if folder is None:
        return None
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    for section in (config, config.get("text_config")) if isinstance(config, dict) else ():
        if isinstance(section, dict):
            value = section.get("dtype") or section.get("torch_dtype")
            if isinstance(value, str):
                return value.removeprefix("torch.")
    return None


def dtype_in_args(server_args: Sequence[str]) -> str | None:
    """The value of ``--dtype`` in server arguments, if they set it."""
    for i, arg in enumerate(server_args):
        if arg == "--dtype" and i + 1 < len(server_args):
            return server_args[i + 1]
        if arg.startswith("--dtype="):
            return arg.split("=", 1)[1]
    return None


@dataclass(frozen=True)
class ServerSettings:
    """The chosen dtype and CPU binding of one server, with the reasons for both."""

    dtype: str | None  # what the server computes in; None: vLLM's own choice
    dtype_reason: str
    cpus: tuple[int, ...] | None  # CPUs of vLLM's OpenMP threads; None: vLLM's own binding
    threads_reason: str
    dtype_flag: bool = True  # False when server_args already carry --dtype

    @property
    def extra_args(self) -> tuple[str, ...]:
        return ("--dtype", self.dtype) if self.dtype and self.dtype_flag else ()

    @property
    def env(self) -> tuple[tuple[str, str], ...]:
        return ((BIND_ENV, format_cpu_list(self.cpus)),) if self.cpus else ()

    def label(self) -> str:
        """Short description for the start-up line, e.g. ``float32 on CPUs 0-1``."""
        dtype = self.dtype or "vLLM's dtype"
        where = f"CPUs {format_cpu_list(self.cpus)}" if self.cpus else "vLLM's CPU binding"
        return f"{dtype} on {where}"

    def record(self) -> dict[str, Any]:
        """For the manifest's ``run.generator``."""
        return {"dtype": self.dtype or "vllm-default", "dtype_reason": self.dtype_reason,
                "cpu_threads": len(self.cpus) if self.cpus else "vllm-default",
                "cpus": format_cpu_list(self.cpus) if self.cpus else None,
                "threads_reason": self.threads_reason}


def native_bf16(facts: MachineFacts) -> str | None:
    """The flag that shows native bf16 arithmetic, or None."""
    if facts.arch in ("aarch64", "arm64"):
        return AARCH64_BF16_FEATURE if AARCH64_BF16_FEATURE in facts.cpu_flags else None
    return next((f for f in NATIVE_BF16_FLAGS if f in facts.cpu_flags), None)


def choose_server_settings(facts: MachineFacts, *, embedded: bool, dtype: str = "auto",
                           cpu_threads: int | None = None, server_args: Sequence[str] = (),
                           environ: Mapping[str, str] | None = None,
                           checkpoint: str | None = None) -> ServerSettings:
    """Settings for a server on a machine with ``facts``.

    ``dtype`` (``auto``, ``float32``, ``bfloat16``) and ``cpu_threads`` (None: automatic) are
    the config's ``generator.dtype`` / ``generator.cpu_threads``; a ``--dtype`` in
    ``server_args`` or ``VLLM_CPU_OMP_THREADS_BIND`` in ``environ`` win over both. The machine
    decides the dtype only for ``embedded`` models on vLLM's CPU build (small, so float32 costs
    no memory worth saving); otherwise ``auto`` is what vLLM would pick for the model's
    ``checkpoint`` dtype, named explicitly (:func:`vllm_auto_dtype`).
    """
    environ = os.environ if environ is None else environ
    in_args = dtype_in_args(server_args)
    flag = native_bf16(facts)
    chosen: str | None
    if in_args is not None and in_args != "auto":
        chosen, why, dtype_flag = in_args, "--dtype in generator.server_args", False
    elif dtype != "auto":
        chosen, why, dtype_flag = dtype, "generator.dtype", True
    elif not (embedded and facts.vllm_cpu_build):
        chosen, dtype_flag = vllm_auto_dtype(checkpoint), True
        why = (f"dtype auto: vLLM's rule for a {checkpoint or 'float32 or unknown'} checkpoint, "
               "named so the cache key and the server agree")
    elif flag:
        chosen, why, dtype_flag = "bfloat16", f"the CPU computes bf16 natively ({flag})", True
    else:
        chosen, why, dtype_flag = "float32", ("the CPU has no native bf16 arithmetic (no "
                                              "avx512_bf16/amx_bf16/bf16 flag): bfloat16 would "
                                              "be emulated, float32 is ~3x faster"), True

    cpus: tuple[int, ...] | None
    allowed = facts.cpus
    if environ.get(BIND_ENV):
        cpus, threads_why = None, f"{BIND_ENV}={environ[BIND_ENV]} is set in the environment"
    elif not facts.vllm_cpu_build:
        cpus, threads_why = None, "not vLLM's CPU build: no CPU binding"
    elif cpu_threads is not None:
        cpus = allowed[:cpu_threads]
        threads_why = f"generator.cpu_threads={cpu_threads}"
        if cpu_threads > len(allowed):
            threads_why += f" (only {len(allowed)} CPUs allowed: all of them)"
    elif len(allowed) <= SMALL_MACHINE_CPUS:
        cpus = allowed
        threads_why = (f"{len(allowed)} CPUs: all of them (vLLM's automatic binding would "
                       "keep one for its scheduler)")
    else:
        cpus, threads_why = None, (f"{len(allowed)} CPUs: vLLM's automatic binding (one thread "
                                   "per physical core, one core kept for its scheduler)")
    return ServerSettings(chosen, why, cpus, threads_why, dtype_flag)
