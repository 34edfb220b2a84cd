"""The cache key holds everything that changes an answer (issue 22, section 2).

A run that changes how the server answers (chat template, tokenizer, quantization, dtype, ...)
must miss the cache; one that changes only where it listens, what it logs or how much memory
it takes must hit it. `dtype: auto` is resolved where the run starts and pinned into the
server wherever it starts, so the server that answers is the one the key names.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_server_settings import AVX2_CPUINFO, SAPPHIRE_CPUINFO, facts

from pipelines.generators import backends, embedded, handler
from pipelines.generators.backends import resolve_identity, server_spec
from pipelines.generators.cache import cache_key
from pipelines.generators.generation import Completion, GenerationRequest
from pipelines.generators.handler import GeneratorModelHandler, generate_one
from pipelines.generators.server_identity import ANSWER_ARGS, NEUTRAL_ARGS, parse_args
from pipelines.settings import DEFAULT_SERVER_ARGS, GeneratorConfig

REQUEST = GenerationRequest(
    request_id="r1", stage="instruction_gen", round=0, subject_id="s",
    prompt="Come up with a task:\n1.", prompt_ref="self_instruct/instruction_gen@1",
    sampling={"max_tokens": 16, "temperature": 0.7}, seed=7)
BASE = ("--enforce-eager",)

# One example value per answer-changing argument ("{tmp}": the test's folder of files);
# None: a switch. Every entry of ANSWER_ARGS must have one (test below).
ANSWER_SAMPLES: dict[str, str | None] = {
    "--chat-template": "{tmp}/template.jinja",
    "--chat-template-content-format": "openai",
    "--default-chat-template-kwargs": '{"enable_thinking": false}',
    "--tokenizer": "{tmp}/tokenizer",
    "--tokenizer-revision": "v2",
    "--tokenizer-mode": "slow",
    "--max-model-len": "2048",
    "--revision": "v2",
    "--code-revision": "v2",
    "--hf-config-path": "{tmp}/tokenizer",
    "--hf-overrides": '{"rope_theta": 1}',
    "--trust-remote-code": None,
    "--load-format": "safetensors",
    "--quantization": "fp8",
    "--quantization-config": "{}",
    "--dtype": "float16",
    "--kv-cache-dtype": "fp8",
    "--enable-lora": None,
    "--lora-modules": "sql={tmp}/adapter",
    "--lora-dtype": "float16",
    "--seed": "1",
    "--generation-config": "{tmp}/generation",
    "--override-generation-config": '{"temperature": 0.5}',
    "--structured-outputs-config": '{"backend": "guidance"}',
    "--logits-processors": "my_module:MyProcessor",
    "--reasoning-parser": "deepseek_r1",
    "--config": "{tmp}/args.yaml",
}


@pytest.fixture(autouse=True)
def _machine(monkeypatch):
    """The reviewer's machine (vLLM's CPU build, AVX2, no bf16), whatever runs the tests."""
    monkeypatch.setattr(backends, "read_machine_facts", lambda: facts(AVX2_CPUINFO))
    monkeypatch.delenv("VLLM_CPU_OMP_THREADS_BIND", raising=False)


@pytest.fixture
def files(tmp_path: Path) -> Path:
    """A local model folder and the files server arguments point at."""
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text('{"torch_dtype": "float32"}')
    (model / "model.safetensors").write_bytes(b"\0" * 64)
    (tmp_path / "template.jinja").write_text("{{ messages[0].content }}")
    for folder, name in (("tokenizer", "tokenizer.json"), ("adapter", "adapter_config.json"),
                         ("generation", "generation_config.json")):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / name).write_text('{"v": 1}')
    (tmp_path / "args.yaml").write_text("max-model-len: 1024\n")
    return tmp_path


def key_for(files: Path, server_args: tuple[str, ...] = BASE, **generator: object) -> str:
    cfg = GeneratorConfig(backend="vllm", model=str(files / "model"),
                          server_args=server_args, **generator)  # type: ignore[arg-type]
    identity = resolve_identity(cfg)
    return cache_key(identity.model, identity.revision, REQUEST, identity.server)


def _sample(flag: str, tmp: Path) -> tuple[str, ...]:
    value = ANSWER_SAMPLES[flag]
    return (flag,) if value is None else (flag, value.replace("{tmp}", str(tmp)))


def _ask(cfg: GeneratorConfig, cache_dir: Path, answer: str, monkeypatch):
    """One request through the cache and a client that answers `answer` (no network)."""

    class Answers:
        def __init__(self, *args: object, **kwargs: object) -> None:
            pass

        def generate(self, request: GenerationRequest) -> tuple[Completion, int, int]:
            return Completion(answer, "stop", 3, 4), 1, 0

    monkeypatch.setattr(handler, "OpenAICompatClient", Answers)
    session = GeneratorModelHandler(cfg, resolve_identity(cfg), str(cache_dir),
                                    endpoint="http://unused/v1").load_model()
    return generate_one(REQUEST, session)


def test_each_way_of_starting_the_server_differently_misses_the_cache(files, monkeypatch):
    """Tried in the issue: one local model folder with --chat-template, --quantization,
    --tokenizer, --generation-config, dtype float32 and bfloat16 gave one key for all."""
    monkeypatch.setattr(handler, "_meter", lambda base_url: None)
    cache = files / "cache"
    variants = {
        "plain": {},
        "chat template": {"server_args": (*BASE, "--chat-template", f"{files}/template.jinja")},
        "quantization": {"server_args": (*BASE, "--quantization", "fp8")},
        "tokenizer": {"server_args": (*BASE, "--tokenizer", f"{files}/tokenizer")},
        "generation config": {"server_args": (*BASE, "--generation-config",
                                              f"{files}/generation")},
        "float32": {"dtype": "float32"},
        "float16 in server_args": {"server_args": (*BASE, "--dtype", "float16")},
    }
    for name, generator in variants.items():
        cfg = GeneratorConfig(backend="vllm", model=str(files / "model"),
                              **{"server_args": BASE, **generator})  # type: ignore[arg-type]
        outcome = _ask(cfg, cache, f"answer of {name}", monkeypatch)
        assert not outcome.cached, f"{name}: replayed another setup's answer"
        assert outcome.completion is not None and outcome.completion.text == f"answer of {name}"
    again = _ask(GeneratorConfig(backend="vllm", model=str(files / "model"), server_args=(
        *BASE, "--port", "8001", "--max-num-seqs", "4")), cache, "not asked", monkeypatch)
    assert again.cached and again.completion.text == "answer of plain"


def test_the_samples_cover_every_answer_changing_argument():
    assert set(ANSWER_SAMPLES) == set(ANSWER_ARGS)


@pytest.mark.parametrize("flag", sorted(ANSWER_ARGS))
def test_each_answer_changing_argument_changes_the_key(files, flag):
    assert key_for(files, (*BASE, *_sample(flag, files))) != key_for(files)


@pytest.mark.parametrize("flag", sorted(NEUTRAL_ARGS))
def test_each_neutral_argument_leaves_the_key(files, flag):
    plain = key_for(files)
    assert key_for(files, (*BASE, flag, "7")) == plain
    assert key_for(files, (flag, *BASE)) == plain  # as a switch
    assert key_for(files, (*BASE, f"{flag}=7")) == plain


def test_the_two_lists_are_disjoint_and_an_unknown_argument_is_in_the_key(files):
    assert not set(ANSWER_ARGS) & NEUTRAL_ARGS
    assert all(flag.startswith("--") for flag in (*ANSWER_ARGS, *NEUTRAL_ARGS))
    plain = key_for(files)
    for unknown in (("--some-future-flag", "x"), ("--some-future-switch",), ("-O3",),
                    ("--tensor-parallel-size", "2")):
        assert key_for(files, (*BASE, *unknown)) != plain, unknown


def test_spellings_vllm_accepts_are_read_as_vllm_reads_them(files):
    assert key_for(files, (*BASE, "--max_model_len", "2048")) == \
        key_for(files, (*BASE, "--max-model-len=2048"))
    assert key_for(files, (*BASE, "-q", "fp8")) == key_for(files, (*BASE, "--quantization", "fp8"))
    assert key_for(files, (*BASE, "--no-enable-prefix-caching")) == key_for(files)
    assert key_for(files, (*BASE, "--hf-overrides.rope_theta", "1")) != key_for(files)
    assert key_for(files, ("--port", "1", *BASE)) == key_for(files, (*BASE, "--port", "2"))
    assert parse_args(("--lora-modules", "a=x", "b=y", "--seed", "-1", "--enforce-eager")) == [
        ("--lora-modules", ("a=x", "b=y")), ("--seed", ("-1",)), ("--enforce-eager", ())]


def test_max_model_len_and_the_defaults_are_in_the_key(files):
    assert key_for(files, (*BASE, "--max-model-len", "2048")) != \
        key_for(files, (*BASE, "--max-model-len", "4096"))
    assert key_for(files, DEFAULT_SERVER_ARGS) != key_for(files)  # its 4096 and xgrammar


def test_files_count_by_content_not_by_where_they_are(files):
    template = files / "template.jinja"
    with_template = key_for(files, (*BASE, "--chat-template", str(template)))
    moved = files / "elsewhere.jinja"
    moved.write_text(template.read_text())
    assert key_for(files, (*BASE, "--chat-template", str(moved))) == with_template
    template.write_text("{{ messages[-1].content }}")
    assert key_for(files, (*BASE, "--chat-template", str(template))) != with_template
    inline = key_for(files, (*BASE, "--chat-template", "{{ messages }}"))  # not a file
    assert inline not in (with_template, key_for(files))


def test_lora_adapters_count_by_name_and_content(files):
    adapter = files / "adapter"
    sql = key_for(files, (*BASE, "--enable-lora", "--lora-modules", f"sql={adapter}"))
    assert key_for(files, (*BASE, "--enable-lora", "--lora-modules", f"sq={adapter}")) != sql
    as_json = json.dumps({"name": "sql", "path": str(adapter)})
    json_key = key_for(files, (*BASE, "--enable-lora", "--lora-modules", as_json))
    (adapter / "adapter_config.json").write_text('{"v": 2}')  # retrained
    assert key_for(files, (*BASE, "--enable-lora", "--lora-modules", f"sql={adapter}")) != sql
    assert key_for(files, (*BASE, "--enable-lora", "--lora-modules", as_json)) != json_key


def test_folders_count_by_content(files):
    for flag, folder in (("--generation-config", "generation"), ("--tokenizer", "tokenizer")):
        before = key_for(files, (*BASE, flag, str(files / folder)))
        (files / folder / "extra.json").write_text("{}")
        assert key_for(files, (*BASE, flag, str(files / folder))) != before, flag


def test_dtype_auto_resolves_to_the_checkpoint_rule_and_is_in_the_key(files):
    identity = resolve_identity(GeneratorConfig(backend="vllm", model=str(files / "model"),
                                                server_args=BASE))
    assert identity.dtype == "bfloat16"  # vLLM's auto for a float32 checkpoint, on a CPU
    assert ("--dtype", "bfloat16") in identity.server
    assert key_for(files, dtype="bfloat16") == key_for(files)  # auto named: the same server
    assert key_for(files, dtype="float32") != key_for(files, dtype="bfloat16")
    (files / "model" / "config.json").write_text('{"torch_dtype": "float16"}')
    assert resolve_identity(GeneratorConfig(backend="vllm", model=str(files / "model"),
                                            server_args=BASE)).dtype == "float16"


def _embedded(monkeypatch, tmp_path, cpuinfo: str):
    monkeypatch.setattr(embedded, "model_revision", lambda name: "pkg==1+gguf-sha256:abc")
    monkeypatch.setattr(backends, "read_machine_facts", lambda: facts(cpuinfo))
    return resolve_identity(GeneratorConfig())


def test_embedded_auto_dtype_is_the_launching_machines_and_pinned_on_the_worker(
        monkeypatch, tmp_path):
    """`dtype: auto` resolves per machine: the key names the one the driver resolved, and
    the server computes in it even on a worker that would have chosen otherwise."""
    on_bf16 = _embedded(monkeypatch, tmp_path, SAPPHIRE_CPUINFO)
    on_avx2 = _embedded(monkeypatch, tmp_path, AVX2_CPUINFO)
    assert (on_bf16.dtype, on_avx2.dtype) == ("bfloat16", "float32")
    keys = {cache_key(i.model, i.revision, REQUEST, i.server) for i in (on_bf16, on_avx2)}
    assert len(keys) == 2

    asked: list[str | None] = []

    def fake_materialize(name, cache_dir=None, dtype=None):
        asked.append(dtype)
        return tmp_path / f"{name}-{dtype}"

    monkeypatch.setattr(embedded, "materialize", fake_materialize)  # worker: AVX2 machine
    spec = server_spec(GeneratorConfig(), on_bf16.pin, on_bf16.dtype)
    assert asked == ["bfloat16"] and spec.extra_args[-2:] == ("--dtype", "bfloat16")
    assert "bfloat16" in spec.label
    # the worker's own choice when it matches: the same server as one started without a pin
    assert server_spec(GeneratorConfig(), None, on_avx2.dtype).key == \
        server_spec(GeneratorConfig()).key


def test_a_dtype_in_server_args_is_replaced_by_the_pinned_one(files):
    cfg = GeneratorConfig(backend="vllm", model=str(files / "model"),
                          server_args=(*BASE, "--dtype", "auto"))
    identity = resolve_identity(cfg)
    assert identity.dtype == "bfloat16"
    assert server_spec(cfg, None, identity.dtype).extra_args == (*BASE, "--dtype", "bfloat16")
    cfg = GeneratorConfig(backend="vllm", model=str(files / "model"),
                          server_args=(*BASE, "--dtype", "float16"))
    assert server_spec(cfg, None, "float32").extra_args == (*BASE, "--dtype", "float32")
    assert server_spec(cfg, None, "float16").extra_args == cfg.server_args


def test_the_session_starts_the_server_with_the_identitys_dtype(files, monkeypatch):
    cfg = GeneratorConfig(backend="vllm", model=str(files / "model"), server_args=BASE)
    identity = resolve_identity(cfg)
    asked = []
    monkeypatch.setattr(handler, "endpoint_for", lambda *args: asked.append(args) or "http://x")
    monkeypatch.setattr(handler, "_meter", lambda base_url: None)
    session = GeneratorModelHandler(cfg, identity, None).load_model()
    session.client  # noqa: B018 (the first use obtains the endpoint)
    assert len(asked) == 1 and asked[0][2:] == (identity.pin, "bfloat16")


def test_an_endpoint_someone_else_runs_keeps_its_keys():
    """No server of ours, no server material: keys of the openai backend are as before."""
    cfg = GeneratorConfig(backend="openai", base_url="http://h/v1", model="m", revision="r",
                          server_args=(*BASE, "--chat-template", "x"))
    identity = resolve_identity(cfg)
    assert identity.server == () and identity.dtype is None
    assert cache_key(identity.model, identity.revision, REQUEST, identity.server) == \
        cache_key("m", "r", REQUEST)
