"""Every shipped recipe builds as a Dataflow job, offline, in both GPU modes.

`--dry_run=True --no_auth --sdk_location=container` makes the DataflowRunner build the job
without network or credentials; the test then checks what Dataflow would receive.
"""

from __future__ import annotations

import pytest
from conftest import ROOT

from pipelines.config import load_config
from pipelines.dataflow import MAX_GRAPH_BYTES, MAX_REQUEST_BYTES, plan_job
from pipelines.errors import InputError

CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))
ACCELERATOR = "type:nvidia-l4;count:1;install-nvidia-driver"
COMMON = ["--project=instructbeam-ci", "--region=us-central1",
          "--temp_location=gs://instructbeam-ci/tmp", "--machine_type=g2-standard-8",
          "--disk_size_gb=200"]
MODES = {
    "worker_accelerator": [f"--dataflow_service_options=worker_accelerator={ACCELERATOR}"],
    "resource_hints": [f"--generation_accelerator={ACCELERATOR}"],
}


def _cloud(config_path):
    name = config_path.stem
    return load_config(config_path, {"output_dir": f"gs://instructbeam-ci/out/{name}",
                                     "cache.dir": "gs://instructbeam-ci/cache"})


def _generators(cfg) -> int:
    """Distinct generator servers a config needs (model + server arguments)."""
    specs = {(cfg.generator.model, cfg.generator.server_args)}
    ensemble = getattr(cfg, "ensemble_instruct", None)
    for extra in getattr(ensemble, "extra_generators", ()) if cfg.recipe == \
            "ensemble_instruct" else ():
        gen = getattr(extra, "generator", extra)
        specs.add((gen.model, gen.server_args))
    return len(specs) if cfg.recipe != "filter" else 0


def test_every_recipe_has_a_config():
    assert CONFIGS


@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("config_path", CONFIGS, ids=lambda p: p.stem)
def test_recipe_builds_as_a_dataflow_job(config_path, mode):
    cfg = _cloud(config_path)
    plan = plan_job(cfg, COMMON + MODES[mode])
    uses_generator = cfg.recipe != "filter"

    assert plan.request_bytes < MAX_REQUEST_BYTES / 4, plan.summary()
    assert plan.graph_bytes < MAX_GRAPH_BYTES / 4, plan.summary()
    calls = [s for s in plan.steps if s.endswith("/Call/BeamML_RunInference")]
    lanes = [s for s in plan.steps if s.endswith("Bootstrap/Generate/ParDo(_LaneFn)")]
    if uses_generator:
        assert calls or lanes, plan.steps
        # every step of one generator server shares one model_identifier
        assert len(plan.model_identifiers) <= _generators(cfg), plan.model_identifiers
        assert bool(plan.model_identifiers) == bool(calls), plan.model_identifiers
    if mode == "worker_accelerator":
        assert plan.gpu_mode == "worker_accelerator"
        assert f"worker_accelerator={ACCELERATOR}" in plan.environment["serviceOptions"]
        assert plan.accelerated_steps == []
    elif uses_generator:
        assert plan.gpu_mode == "resource_hints"
        # every generation step (bootstrap lanes, each unrolled level, each model) is accelerated
        assert set(calls + lanes) <= set(plan.accelerated_steps), (calls + lanes,
                                                                   plan.accelerated_steps)
        assert all("Generate" in s or "Call" in s or "Infer" in s or "Tag" in s
                   for s in plan.accelerated_steps), plan.accelerated_steps
    # no labels generated from our own code (line numbers, addresses): they change with edits
    ours = {p.name for d in ("pipelines", "filters") for p in (ROOT / d).glob("*.py")}
    unstable = [s for s in plan.steps
                if " at 0x" in s or any(f"<lambda at {name}" in s for name in ours)]
    assert not unstable, unstable


@pytest.mark.parametrize("config_path", CONFIGS[:1], ids=lambda p: p.stem)
def test_step_names_are_stable(config_path):
    cfg = _cloud(config_path)
    first = plan_job(cfg, COMMON + MODES["resource_hints"])
    second = plan_job(cfg, COMMON + MODES["resource_hints"])
    assert first.steps == second.steps


def test_both_gpu_modes_at_once_is_one_clear_error():
    cfg = _cloud(CONFIGS[0])
    with pytest.raises(InputError, match="choose one GPU mode"):
        plan_job(cfg, COMMON + MODES["worker_accelerator"] + MODES["resource_hints"])


def test_local_output_is_refused_for_dataflow():
    cfg = load_config(CONFIGS[0], {"output_dir": "out/x", "cache.dir": "gs://b-ci/cache"})
    with pytest.raises(InputError, match="gs:// location"):
        plan_job(cfg, COMMON)


def test_paper_scale_bootstrap_plans_fast_with_a_small_graph(capsys):
    """The bootstrap streams inside its lanes, so the job graph does not grow with the target
    (unrolled rounds: 200 rounds were 10.5 MiB, 500 took 281 s to build). `instructbeam plan`
    as a user runs it, for the paper's 50K and ten times that, on 8 lanes."""
    import time

    from pipelines.cli import main

    summaries = []
    for num_instructions in (50_000, 500_000):
        t0 = time.monotonic()
        assert main(["plan", str(ROOT / "configs" / "self_instruct_demo.yaml"),
                     "--set", "output_dir=gs://instructbeam-ci/out/si",
                     "--set", "cache.dir=gs://instructbeam-ci/cache",
                     "--set", f"self_instruct.num_instructions={num_instructions}",
                     "--set", "self_instruct.lanes=8",
                     *COMMON, *MODES["resource_hints"]]) == 0
        took = time.monotonic() - t0
        printed = capsys.readouterr().out.strip()
        graph_kib = float(printed.split("graph ")[1].split(" KiB")[0])
        assert took < 30, f"plan took {took:.1f} s"
        assert graph_kib < 1024, printed
        assert "1 accelerated step(s)" in printed  # the lanes: they classify and make instances
        summaries.append((printed.split(": ", 1)[1], f"{num_instructions}: {took:.1f} s"))
    assert summaries[0][0] == summaries[1][0], "the graph must not depend on the target"
    print(f"\nplan {summaries[0][1]}, {summaries[1][1]}: {summaries[0][0]}")
