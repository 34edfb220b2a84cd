"""The command line: a run prints a summary; bad input exits non-zero with one clear line and
leaves the output directory untouched."""

from __future__ import annotations

import json
import re

import pytest

from pipelines.cli import main


def _config(tmp_path, base_url: str, **extra: str) -> str:
    lines = [
        "recipe: self_instruct",
        f"output_dir: {tmp_path / 'out'}",
        "generator:",
        "  backend: openai",
        f"  base_url: {base_url}",
        "  model: scripted",
        "  timeout_s: 5",
        "self_instruct:",
        "  num_instructions: 8",
        "  prompts_per_round: 3",
        "  max_prompts: 6",
        *(f"{k}: {v}" for k, v in extra.items()),
    ]
    path = tmp_path / "config.yaml"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_run_then_inspect(scripted_server, tmp_path, capsys):
    server = scripted_server()
    config = _config(tmp_path, server.base_url)
    assert main(["run", config, "--no-cache"]) == 0
    summary = capsys.readouterr().out
    assert "instruction_gen" in summary and "accounting: OK" in summary
    assert str(tmp_path / "out" / "data") in summary
    assert main(["inspect", str(tmp_path / "out")]) == 0
    assert capsys.readouterr().out == summary


@pytest.mark.parametrize(
    ("seed_text", "expected"),
    [(b"", "contains no seed tasks"),
     (b'{"id": "a", "instruction": "x", "is_classification": false}\n',
      ":1: field 'instances' is missing"),
     (b"\xff\xfe\n", ":1: not valid UTF-8")],
)
def test_bad_input_leaves_output_untouched(scripted_server, tmp_path, capsys, seed_text,
                                           expected):
    server = scripted_server()
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("previous run")
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_bytes(seed_text)
    config = _config(tmp_path, server.base_url, seed_tasks=str(seeds))
    assert main(["run", config]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and expected in err[-1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml", "out", "seeds.jsonl"]
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert server.stats.requests == 0


def test_unknown_key_is_one_clear_error(tmp_path, capsys):
    config = _config(tmp_path, "http://127.0.0.1:9/v1", max_failure_rate="0.1")
    assert main(["run", config]) == 2
    err = capsys.readouterr().err
    assert "config.yaml:12: field 'max_failure_rate' is not a known key" in err


def test_progress_clock_and_summary_duration_agree(scripted_server, tmp_path, capsys,
                                                  monkeypatch):
    """Both count from the run's start, however long ago the module was imported (here: a
    clock that would otherwise have started 100 s before the run)."""
    from pipelines.outputs.progress import PROGRESS

    monkeypatch.setattr(PROGRESS, "_enabled", True)
    monkeypatch.setattr(PROGRESS, "_tty", True)  # a line at the first update, then every 0.5 s
    monkeypatch.setattr(PROGRESS, "_start", PROGRESS._start - 100)
    server = scripted_server()
    assert main(["run", _config(tmp_path, server.base_url), "--no-cache"]) == 0
    printed = capsys.readouterr()
    clock = [int(s) for s in re.findall(r"\[\s*(\d+)s\]", printed.err)]
    duration = float(re.search(r", ([\d.]+) s$", printed.out.splitlines()[0]).group(1))
    assert clock and max(clock) <= duration + 0.5, (clock, duration)


def test_every_run_option_is_documented_in_the_readme(capsys):
    from conftest import ROOT

    with pytest.raises(SystemExit):
        main(["run", "--help"])
    options = set(re.findall(r"(--[a-z][a-z-]+)", capsys.readouterr().out)) - {"--help"}
    assert {"--output-dir", "--no-cache", "--set"} <= options
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert [o for o in sorted(options) if f"`{o}" not in readme and f" {o} " not in readme] == []


def test_set_typo_names_the_option_and_suggests_the_key(tmp_path, capsys):
    config = _config(tmp_path, "http://127.0.0.1:9/v1")
    assert main(["run", config, "--set", "self_instruct.max_prompt=5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == ("error: --set self_instruct.max_prompt: not a known key; did you mean "
                       "`max_prompts`?")
    assert not (tmp_path / "out").exists()


def test_manifest_records_no_secret(scripted_server, tmp_path, monkeypatch, capsys):
    secret = "sk-test-0123456789abcdef"
    monkeypatch.setenv("INSTRUCTBEAM_TEST_KEY", secret)
    server = scripted_server()
    config = _config(tmp_path, server.base_url)
    text = open(config).read().replace("  timeout_s: 5", "  timeout_s: 5\n"
                                       "  api_key_env: INSTRUCTBEAM_TEST_KEY")
    open(config, "w").write(text)
    assert main(["run", config, "--no-cache"]) == 0
    printed = capsys.readouterr()
    out = tmp_path / "out"
    for path in out.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
    assert secret not in printed.out + printed.err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["generator"]["api_key_env"] == "INSTRUCTBEAM_TEST_KEY"
