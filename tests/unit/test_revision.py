"""The revision that names a generator: hub commits from the HF cache, local folder hashes,
the openai backend's configured revision, and the warnings when none can be had."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from pipelines.config import load_config
from pipelines.errors import InputError
from pipelines.generators.backends import resolve_identity, server_spec
from pipelines.generators.revision import (
    CONTENT_HASH_MAX_BYTES,
    directory_fingerprint,
    hub_cache_dir,
    resolve_vllm,
    server_arg,
)
from pipelines.settings import GeneratorConfig

COMMIT = "0123456789abcdef0123456789abcdef01234567"
OTHER = "fedcba9876543210fedcba9876543210fedcba98"


def _hub_repo(hub: Path, repo_id: str, refs: dict[str, str], snapshots: list[str]) -> Path:
    """The layout huggingface_hub writes: refs/<branch> holds a commit, snapshots/<commit>/."""
    repo = hub / ("models--" + repo_id.replace("/", "--"))
    for ref, commit in refs.items():
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / ref).write_text(commit)  # no newline, as huggingface_hub writes it
    for commit in snapshots:
        (repo / "snapshots" / commit).mkdir(parents=True)
        (repo / "snapshots" / commit / "config.json").write_text("{}")
    return repo


def _model_dir(root: Path) -> Path:
    model = root / "my-model"
    model.mkdir()
    (model / "config.json").write_text('{"hidden_size": 64}')
    (model / "model.safetensors").write_bytes(b"\0" * (CONTENT_HASH_MAX_BYTES + 1))
    return model


def test_hub_id_resolves_to_the_cached_main_commit_and_pins_it(tmp_path):
    hub = tmp_path / "hub"
    _hub_repo(hub, "org/model", {"main": COMMIT}, [OTHER, COMMIT])
    got = resolve_vllm("org/model", (), env={"HF_HUB_CACHE": str(hub)})
    assert (got.revision, got.pin, got.warning) == (COMMIT, COMMIT, None)


def test_hub_cache_location_follows_huggingface_hub_rules(tmp_path):
    assert hub_cache_dir({"HF_HOME": str(tmp_path)}) == tmp_path / "hub"
    assert hub_cache_dir({"XDG_CACHE_HOME": str(tmp_path)}) == tmp_path / "huggingface" / "hub"
    assert hub_cache_dir({"HF_HUB_CACHE": "/a", "HF_HOME": "/b"}) == Path("/a")
    assert hub_cache_dir({}) == Path("~/.cache/huggingface/hub").expanduser()
    _hub_repo(tmp_path / "hub", "org/model", {"main": COMMIT}, [COMMIT])
    assert resolve_vllm("org/model", (), env={"HF_HOME": str(tmp_path)}).revision == COMMIT


def test_server_args_choose_download_dir_and_branch(tmp_path):
    downloads = tmp_path / "downloads"
    _hub_repo(downloads, "org/model", {"main": COMMIT, "v2": OTHER}, [COMMIT, OTHER])
    env = {"HF_HUB_CACHE": str(tmp_path / "empty")}
    args = ("--enforce-eager", f"--download-dir={downloads}")
    assert resolve_vllm("org/model", args, env=env).revision == COMMIT
    got = resolve_vllm("org/model", (*args, "--revision", "v2"), env=env)
    assert (got.revision, got.pin) == (OTHER, OTHER)
    # a commit given by the user needs no cache: vLLM downloads exactly that commit
    pinned = resolve_vllm("org/new", ("--revision", OTHER), env=env)
    assert (pinned.revision, pinned.pin, pinned.warning) == (OTHER, OTHER, None)


def test_a_single_snapshot_without_refs_is_unambiguous_several_are_not(tmp_path):
    hub = tmp_path / "hub"
    _hub_repo(hub, "org/one", {}, [COMMIT])
    _hub_repo(hub, "org/two", {}, [COMMIT, OTHER])
    env = {"HF_HUB_CACHE": str(hub)}
    assert resolve_vllm("org/one", (), env=env).revision == COMMIT
    assert resolve_vllm("org/two", (), env=env).revision == "unresolved:org/two"


def test_uncached_hub_id_is_unresolved_with_a_warning_that_says_how_to_pin(tmp_path):
    hub = tmp_path / "hub"
    _hub_repo(hub, "org/model", {"main": COMMIT}, [])  # ref without its snapshot: not usable
    got = resolve_vllm("org/model", (), env={"HF_HUB_CACHE": str(hub)})
    assert (got.revision, got.pin) == ("unresolved:org/model", None)
    assert got.warning is not None and "--revision <commit>" in got.warning
    missing = resolve_vllm(str(tmp_path / "no" / "such" / "dir"), (), env={})
    assert missing.revision.startswith("unresolved:") and "not a directory" in missing.warning


def test_local_directory_fingerprint_follows_its_files(tmp_path):
    model = _model_dir(tmp_path)
    weights = model / "model.safetensors"
    first = resolve_vllm(str(model), ())
    assert first.revision.startswith("dir-sha256:") and first.pin is None
    assert first.warning is None
    assert resolve_vllm(str(model), ()).revision == first.revision  # stable when unchanged
    (model / ".cache").mkdir()  # tools' scratch space is not the model
    (model / ".cache" / "lock").write_text("x")
    assert directory_fingerprint(model) == first.revision.split(":")[1]

    stat = weights.stat()
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # touch
    touched = directory_fingerprint(model)
    assert touched != first.revision.split(":")[1]

    config = model / "config.json"  # a small file counts by content, even at the same mtime
    before = config.stat()
    config.write_text('{"hidden_size": 65}')
    os.utime(config, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert directory_fingerprint(model) != touched
    changed = directory_fingerprint(model)
    (model / "extra.bin").symlink_to(model / "gone.bin")  # dangling: counted, no crash
    assert directory_fingerprint(model) != changed


def test_openai_revision_comes_from_config_and_its_absence_is_warned_once(caplog):
    cfg = GeneratorConfig(backend="openai", base_url="http://h/v1", model="served-a",
                          revision="2024-06-01")
    with caplog.at_level(logging.WARNING, logger="pipelines.generators.handler"):
        assert resolve_identity(cfg).revision == "2024-06-01"
        assert not caplog.records
        bare = GeneratorConfig(backend="openai", base_url="http://h/v1", model="served-b")
        assert resolve_identity(bare).revision == "unversioned"
        assert resolve_identity(bare).revision == "unversioned"
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "generator.revision is not set" in warnings[0]
    assert "'served-b'" in warnings[0]


def test_vllm_identity_carries_the_pin_into_the_server_args(tmp_path, monkeypatch):
    hub = tmp_path / "hub"
    _hub_repo(hub, "org/model", {"main": COMMIT}, [COMMIT])
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    cfg = GeneratorConfig(backend="vllm", model="org/model",
                          server_args=("--enforce-eager", "--revision=main"))
    identity = resolve_identity(cfg)
    assert (identity.model, identity.revision, identity.pin) == ("org/model", COMMIT, COMMIT)
    args = server_spec(cfg, identity.pin).extra_args
    dtype = ("--dtype", "bfloat16")  # `auto` named (test_cache_identity.py)
    assert args == ("--enforce-eager", "--revision", COMMIT, *dtype)
    assert server_arg(args, "--revision") == COMMIT
    assert server_spec(cfg).extra_args == (*cfg.server_args, *dtype)


@pytest.mark.parametrize(("generator", "expected"), [
    ("  backend: vllm\n  model: org/m\n  revision: abc\n",
     "field 'generator.revision' only applies to backend 'openai', not 'vllm'"),
    ("  backend: openai\n  base_url: http://h/v1\n  model: m\n  revision: ''\n",
     "field 'generator.revision' must not be empty"),
])
def test_revision_in_config_only_for_openai(tmp_path, generator, expected):
    path = tmp_path / "c.yaml"
    path.write_text(f"recipe: self_instruct\noutput_dir: out/x\ngenerator:\n{generator}")
    with pytest.raises(InputError, match=expected):
        load_config(path)
    good = tmp_path / "good.yaml"
    good.write_text("recipe: self_instruct\noutput_dir: out/x\ngenerator:\n  backend: openai\n"
                    "  base_url: http://h/v1\n  model: m\n  revision: v3\n")
    assert load_config(good).generator.revision == "v3"
