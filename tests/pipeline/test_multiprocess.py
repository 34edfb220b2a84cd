"""Every recipe on the local runner with two worker processes gives byte-identical shards.

Multi-process mode pickles every DoFn, side input and record across processes, so it catches
shared-state and pickling mistakes that a single in-process run hides.
"""

from __future__ import annotations

import json
import typing

import pytest
from helpers import scripted_config, shard_digests

from pipelines.config import RunConfig
from pipelines.run import run
from pipelines.settings import FiltersConfig, InputConfig, RulesConfig

MULTI = ["--direct_num_workers=2", "--direct_running_mode=multi_processing"]
RECIPES = typing.get_args(typing.get_type_hints(RunConfig)["recipe"])


def _filter_config(tmp_path, start, out) -> RunConfig:
    data = tmp_path / "data.jsonl"
    if not data.exists():
        rows = [{"instruction": f"Explain topic number {i % 17} in simple words.",
                 "input": "" if i % 3 else f"context {i}", "output": f"answer {i}"}
                for i in range(120)]
        data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return RunConfig(recipe="filter", output_dir=str(out), num_shards=2,
                     input=InputConfig(path=str(data)),
                     filters=FiltersConfig(rules=RulesConfig(illegal_words=("topic number 3",))))


def _self_instruct_config(tmp_path, start, out) -> RunConfig:
    from fakes import ScriptedServer

    return scripted_config(start(ScriptedServer).base_url, out, None)


def _ensemble_config(tmp_path, start, out) -> RunConfig:
    from ensemble_fakes import EnsembleScriptedServer
    from test_ensemble_pipeline import _config

    gen = start(EnsembleScriptedServer, "twin")
    other = start(EnsembleScriptedServer, "other")
    return _config(gen.base_url, other.base_url, out)


def _instag_config(tmp_path, start, out) -> RunConfig:
    from instag_fakes import ScriptedTagger
    from test_instag_pipeline import QUERIES, _config

    return _config(tmp_path, start(ScriptedTagger).base_url, [{"query": q} for q in QUERIES],
                   out=out.name)


def _explore_config(tmp_path, start, out) -> RunConfig:
    from explore_fakes import ExploreServer
    from test_explore_pipeline import _config

    return _config(start(ExploreServer), out)


def _atomic_config(tmp_path, start, out) -> RunConfig:
    from atomic_fakes import ScriptedSplitter
    from test_atomic_tasks_pipeline import _config

    return _config(tmp_path, start(ScriptedSplitter).base_url, out=out.name)


def _ultrachat_config(tmp_path, start, out) -> RunConfig:
    from test_ultrachat_pipeline import _config
    from ultrachat_fakes import ChatScript, ChatServer

    return _config(start(ChatServer, ChatScript(drift_topic="tides")), out)


# One scripted config per recipe; a recipe without one fails the test below, so a new
# recipe cannot skip this check.
SCRIPTED = {"filter": _filter_config, "self_instruct": _self_instruct_config,
            "ensemble_instruct": _ensemble_config, "instag": _instag_config,
            "explore_instruct": _explore_config, "atomic_tasks": _atomic_config,
            "ultrachat": _ultrachat_config}


@pytest.fixture
def start():
    servers = []

    def make(cls, *args):
        server = cls(*args)
        server.start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.mark.parametrize("recipe", RECIPES)
def test_multi_process_run_matches_single_process(recipe, start, tmp_path):
    if recipe not in SCRIPTED:
        pytest.fail(f"no scripted config for recipe {recipe!r}: add one to SCRIPTED")
    single, multi = tmp_path / "single", tmp_path / "multi"
    run(SCRIPTED[recipe](tmp_path, start, single))
    run(SCRIPTED[recipe](tmp_path, start, multi), MULTI)
    digests = shard_digests(single)
    assert digests, "the run wrote no shards"
    assert shard_digests(multi) == digests
