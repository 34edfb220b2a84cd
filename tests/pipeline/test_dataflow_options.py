"""Bad Dataflow/Beam options: one line naming the option, exit 2, and no network.

Before these checks a bucket Beam rejects (`gs://b/tmp`) sent Beam looking for a default
bucket over the network (two minutes of retries, then a traceback), and a bad project ID
was a traceback. Every test here runs with the network blocked: any connection attempt or
name lookup raises `NetworkUsed`, a BaseException that no retry loop swallows.
"""

from __future__ import annotations

import socket

import pytest
from conftest import ROOT

from pipelines import dataflow
from pipelines.cli import main
from pipelines.dataflow import JobPlan

CONFIG = str(ROOT / "configs" / "self_instruct_demo.yaml")
LOCATIONS = ["--set", "output_dir=gs://instructbeam-ci/out/demo",
             "--set", "cache.dir=gs://instructbeam-ci/cache"]
GOOD = {"--project": "instructbeam-ci", "--region": "us-central1",
        "--temp_location": "gs://instructbeam-ci/tmp"}


class NetworkUsed(BaseException):
    """Raised on any network use; a BaseException so retry loops cannot hide it."""


@pytest.fixture
def no_network(monkeypatch):
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args[1:2] or args[:1])
        raise NetworkUsed(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    yield attempts
    assert attempts == [], attempts


def _args(drop: tuple[str, ...] = (), **changes: str) -> list[str]:
    options = {**GOOD, **{f"--{k}": v for k, v in changes.items()}}
    return [item for flag, value in options.items() if flag not in drop
            for item in (flag, value)]


def _joined(args: list[str]) -> list[str]:
    """`--flag value` pairs as `--flag=value` (the form `instructbeam run` accepts)."""
    return [f"{flag}={value}" for flag, value in zip(args[::2], args[1::2], strict=True)]


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and "usage:" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


BAD_PLAN_OPTIONS = {
    # the two cases from the issue: Beam retried ~2 min, and a traceback
    "short bucket": (_args(temp_location="gs://b/tmp"), "--temp_location 'gs://b/tmp'"),
    "project name": (_args(project="P"), "--project 'P'"),
    "project number": (_args(project="123456789012"), "project number"),
    "no project": (_args(drop=("--project",)), "--project is required"),
    "region": (_args(region="US"), "--region 'US'"),
    "no temp location": (_args(drop=("--temp_location",)), "--temp_location is required"),
    "local temp location": (_args(temp_location="/tmp/x"), "--temp_location '/tmp/x'"),
    "bucket root without slash": (_args(temp_location="gs://instructbeam-ci"),
                                  "--temp_location"),
    "goog bucket": (_args(staging_location="gs://goog-stage/s"), "--staging_location"),
    "uppercase bucket": (_args(temp_location="gs://My-Bucket/tmp"), "--temp_location"),
    "machine type": (_args(machine_type="G2 standard"), "--machine_type"),
    "zero workers": (_args(num_workers="0"), "--num_workers 0"),
    "negative max workers": (_args(max_num_workers="-3"), "--max_num_workers -3"),
    "more workers than max": (_args(num_workers="5", max_num_workers="2"),
                              "--num_workers 5 is more than --max_num_workers 2"),
    "non-integer workers": (_args(num_workers="abc"), "--num_workers"),
    "negative disk": (_args(disk_size_gb="-5"), "--disk_size_gb -5"),
    "worker zone": (_args(worker_zone="central"), "--worker_zone 'central'"),
    "job name": (_args(job_name="Bad_Name"), "job_name"),
    "autoscaling choice": (_args(autoscaling_algorithm="FOO"), "--autoscaling_algorithm"),
    "min ram": (_args(generation_min_ram="lots"), "--generation_min_ram 'lots'"),
    "generation accelerator": (_args(generation_accelerator="count:1"),
                               "--generation_accelerator"),
    "worker accelerator": (_args(dataflow_service_options="worker_accelerator=type:nvidia-l4;"
                                                          "count:0"), "worker_accelerator"),
    "output bucket": (["--set", "output_dir=gs://Out/x", *_args()], "output_dir 'gs://Out/x'"),
    "cache bucket": (["--set", "cache.dir=gs://c/cache", *_args()], "cache.dir 'gs://c/cache'"),
}


@pytest.mark.parametrize("case", sorted(BAD_PLAN_OPTIONS))
def test_bad_plan_option_is_one_line_without_network(case, no_network, capsys):
    args, expected = BAD_PLAN_OPTIONS[case]
    assert main(["plan", CONFIG, *LOCATIONS, *args]) == 2
    line = _one_error_line(capsys)
    assert expected in line, line


def test_domain_scoped_project_and_bucket_root_temp_location_plan(no_network, capsys):
    args = _args(project="example.com:instructbeam-ci", temp_location="gs://instructbeam-ci/",
                 machine_type="g2-standard-8", num_workers="1", max_num_workers="4")
    assert main(["plan", CONFIG, *LOCATIONS, *args]) == 0
    assert "Dataflow job for" in capsys.readouterr().out


@pytest.mark.parametrize("limit, problem", [("MAX_GRAPH_BYTES", "the job graph is"),
                                            ("MAX_REQUEST_BYTES", "the job request is")])
def test_plan_over_dataflow_limits_exits_1_after_printing_sizes(limit, problem, no_network,
                                                                 monkeypatch, capsys):
    monkeypatch.setattr(dataflow, limit, 64 * 1024)  # the demo's job is ~300 KiB
    assert main(["plan", CONFIG, *LOCATIONS, *_args()]) == 1
    out = capsys.readouterr()
    assert "Dataflow job for" in out.out and "KiB" in out.out
    lines = out.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: Dataflow would refuse this job: ")
    assert problem in lines[0] and "over Dataflow's" in lines[0]


def test_limit_problems():
    def plan(request: int, graph: int) -> JobPlan:
        return JobPlan([], request, graph, [], "none", [], {})

    assert plan(dataflow.MAX_REQUEST_BYTES, dataflow.MAX_GRAPH_BYTES).limit_problems() == []
    assert plan(dataflow.MAX_REQUEST_BYTES + 1, 0).limit_problems() == [
        "the job request is 20.0 MiB, over Dataflow's 20 MiB limit"]
    over = plan(0, int(10.5 * 2**20)).limit_problems()
    assert over == ["the job graph is 10.5 MiB, over Dataflow's 10 MiB limit"]


def _run_config(tmp_path) -> str:
    path = tmp_path / "config.yaml"
    path.write_text("recipe: self_instruct\n"
                    "output_dir: gs://instructbeam-ci/out/run\n"
                    "generator:\n  backend: openai\n  base_url: http://192.0.2.1:9/v1\n"
                    "  model: scripted\n"
                    "self_instruct:\n  num_instructions: 8\n  max_prompts: 4\n")
    return str(path)


@pytest.mark.parametrize("args, expected", [
    (_args(temp_location="gs://b/tmp"), "--temp_location 'gs://b/tmp'"),
    (_args(project="P"), "--project 'P'"),
    (_args(num_workers="0"), "--num_workers 0"),
])
def test_run_on_dataflow_checks_the_same_options(tmp_path, args, expected, no_network,
                                                 capsys):
    assert main(["run", _run_config(tmp_path), "--runner=DataflowRunner",
                 *_joined(args)]) == 2
    line = _one_error_line(capsys)
    assert expected in line, line


def test_run_with_a_mistyped_beam_option_is_one_line(tmp_path, no_network, capsys):
    assert main(["run", _run_config(tmp_path), "--direct_num_workers=two"]) == 2
    assert "--direct_num_workers" in _one_error_line(capsys)
