"""The README is true: its commands and Python snippets run as written, from a directory laid out
like the repository after `make run` (a Self-Instruct demo output at `out/self_instruct_demo`,
answered by the scripted generator; `configs/` linked in), and its claims about the rows hold.

Every command the README shows (a line of a ```bash block, or an inline code span starting with a
command) must match exactly one rule below: RUN (run here, in-process through the CLI's `main`),
CONFIG (the config and its `--set` overrides are loaded and checked, not run: a real model), or
EXCLUDED (with the reason). A new command that matches none fails `test_every_command_is_covered`.
"""

from __future__ import annotations

import ast
import contextlib
import importlib.util
import re
import shlex
import sys
import types
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from conftest import ROOT, skip_or_fail
from fakes import ScriptedServer
from helpers import read_rows

from pipelines.cli import main
from pipelines.config import load_config
from pipelines.run import run
from schemas import RECORD_SCHEMA

README = ROOT / "README.md"
TEXT = README.read_text(encoding="utf-8")
RUN_DIR = "out/self_instruct_demo"
CLI = ".venv/bin/instructbeam"
# Inline code spans that are commands (prose also quotes flags, paths and field names).
COMMAND_START = re.compile(r"^(make|docker|pip|python3?|\.|\.venv/bin/\S+|instructbeam)(\s|$)")

EXCLUDED: dict[str, str] = {
    r"^make (run|test)( (PYTHON|CONFIG|ARGS)=\S+)?$":
        "installs the venv and runs a demo on a real vLLM server: tests/e2e run every demo "
        "config, tests/unit/test_makefile_python.py the interpreter check",
    rf"^{re.escape(CLI)} run CONFIG --(overwrite|strict-targets)$":
        "a run on a real model; tests/pipeline/test_outputs.py and test_targets_pipeline.py run "
        "both flags through the CLI",
    r"^make install$": "installs the venv: the first half of `make run`",
    r"^make bench$": "benchmarks take minutes; run by hand",
    rf"^{re.escape(CLI)} train-classifier ":
        "needs a labelled set and the MiniLM model; tests/unit/test_quality_classifier.py runs "
        "the command through the CLI",
    r"^(python3|\.venv/bin/(instructbeam|python))$": "names a program, runs nothing",
    r"^\. \.venv/bin/activate$": "changes the reader's shell; the commands here call the venv's "
                                  "programs by path",
    r"^docker ": "needs Docker and an image registry",
    rf"^{re.escape(CLI)} review \S+$":
        "serves the review page until Ctrl-C: tests/pipeline/test_review_run.py drives the "
        "same server, tests/e2e/test_review_browser.py a browser on it",
    rf"^{re.escape(CLI)} review \S+ --import \S+$":
        "needs a file the review page exported: tests/e2e/test_review_browser.py imports one",
    rf"^{re.escape(CLI)} run \S+ .*(--runner=DataflowRunner|--generation_accelerator=)":
        "submits a Dataflow job (Google Cloud); `plan` checks the same job offline",
}
CONFIG = rf"^{re.escape(CLI)} run configs/\S+\.yaml( --output-dir \S+)?( --set \S+)+$"
RUN = rf"^{re.escape(CLI)} ((inspect|export|plan) |review \S+ --no-serve$)"
# Placeholders of the Dataflow steps, replaced by values that need no cloud.
PLACEHOLDERS = {"CONFIG": "configs/self_instruct_demo.yaml", "P": "readme-project",
                "R": "us-central1", "gs://...": "gs://instructbeam-readme/run"}
VARIABLES = {"BUCKET": "instructbeam-readme"}


# --- reading the README ---------------------------------------------------------------------

def fenced(language: str) -> list[str]:
    return [m.group(2) for m in re.finditer(r"^```(\w*)\n(.*?)^```", TEXT, re.M | re.S)
            if m.group(1) == language]


def commands() -> list[tuple[str, str]]:
    """(command, comment) for every bash line (continuations joined) and inline command."""
    found = []
    for block in fenced("bash"):
        for line in block.replace("\\\n", " ").splitlines():
            code, _, comment = line.partition(" #") if not line.startswith("#") else ("", "", "")
            if code.strip():
                found.append((" ".join(code.split()), comment.strip()))
    prose = re.sub(r"^```.*?^```", "", TEXT, flags=re.M | re.S)
    for span in re.findall(r"`([^`]+)`", prose):
        span = " ".join(span.split())
        if COMMAND_START.match(span):
            found.append((span, ""))
    return found


def rule_of(command: str) -> str:
    rules = [r for r in (*EXCLUDED, CONFIG, RUN) if re.search(r, command)]
    assert len(rules) <= 1, (command, rules)
    return rules[0] if rules else ""


def argv(command: str) -> list[str]:
    for name, value in VARIABLES.items():
        command = command.replace(f"${name}", value)
    words = [PLACEHOLDERS.get(w, w) for w in shlex.split(command)]
    words = [w.replace("gs://...", PLACEHOLDERS["gs://..."]) for w in words]
    assert words[0] == CLI, command
    return words[1:]


IMPORT_LINE = re.compile(r"^(import|from) \S+")


def python_snippets() -> list[str]:
    """Each ```python block, split where a line that imports follows a line of code, so a
    library that is not installed skips only its own lines."""
    snippets = []
    for block in fenced("python"):
        current: list[str] = []
        previous_is_code = False
        for line in block.splitlines():
            imports = bool(IMPORT_LINE.match(line))
            if imports and previous_is_code and current:
                snippets.append("\n".join(current))
                current = []
            current.append(line)
            if line.strip():
                previous_is_code = not imports or ";" in line
        snippets.append("\n".join(current))
    return snippets


ALL_COMMANDS = commands()
RUN_COMMANDS = [(c, note) for c, note in ALL_COMMANDS if rule_of(c) == RUN]
CONFIG_COMMANDS = [c for c, _ in ALL_COMMANDS if rule_of(c) == CONFIG]
SNIPPETS = python_snippets()


# --- the demo output ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A directory like the repository after `make run`: configs/ and the demo output."""
    root = tmp_path_factory.mktemp("readme")
    (root / "configs").symlink_to(ROOT / "configs")
    server = ScriptedServer()
    server.start()
    try:
        with contextlib.chdir(root):
            cfg = load_config(root / "configs" / "self_instruct_demo.yaml", {
                "generator.backend": "openai", "generator.base_url": server.base_url,
                "generator.model": "scripted", "cache.enabled": False})
            assert cfg.output_dir == RUN_DIR  # the path every README command uses
            run(cfg)
    finally:
        server.stop()
    assert read_rows(root / RUN_DIR, "data")
    return root


@pytest.fixture
def in_workdir(workdir, monkeypatch, tmp_path):
    monkeypatch.chdir(workdir)
    # `datasets` offline, with its cache outside the home directory
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf" / "datasets"))
    # `datasets` reads those variables once, on import: when an earlier test of the session
    # imported it, the machine's shared cache would answer for a same-named run folder of an
    # older run (CI saw 87 cached rows for a run with 62).
    if "datasets" in sys.modules:
        monkeypatch.setattr(sys.modules["datasets"].config, "HF_DATASETS_CACHE",
                            tmp_path / "hf" / "datasets")
    return workdir


# --- tests ----------------------------------------------------------------------------------

def test_every_command_is_covered():
    """A command that is neither run, config-checked nor excluded with a reason fails here."""
    assert RUN_COMMANDS and CONFIG_COMMANDS and SNIPPETS
    uncovered = [c for c, _ in ALL_COMMANDS if not rule_of(c)]
    assert not uncovered, f"README commands neither run nor excluded: {uncovered}"


def test_the_cli_is_called_one_way():
    """`instructbeam` alone is not on the PATH after `make run`: every CLI call names the venv."""
    bare = [c for c, _ in ALL_COMMANDS if c.startswith("instructbeam")]
    assert not bare, f"use {CLI}: {bare}"
    assert (Path(ROOT) / "setup.py").read_text().count('"instructbeam=pipelines.cli:main"') == 1


@pytest.mark.parametrize(("command", "note"), RUN_COMMANDS, ids=[c for c, _ in RUN_COMMANDS])
def test_command_runs(in_workdir, command, note, capsys):
    args = argv(command)
    assert main(args) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    if args[0] == "inspect":
        assert "instruction_gen" in printed and "accounting: OK" in printed
    elif args[0] == "export":
        # the file the command names, or the one its comment promises
        target = args[args.index("--output") + 1] if "--output" in args else note
        assert Path(target).is_file() and Path(target).stat().st_size > 0, (target, printed)
    elif args[0] == "plan":
        assert "step" in printed, printed
    elif args[0] == "review":
        assert Path(args[1], "review", "index.html").is_file(), printed


@pytest.mark.parametrize("command", CONFIG_COMMANDS)
def test_config_command_loads(command):
    """The config and overrides a `run` command shows are valid (running needs a real model)."""
    words = shlex.split(command)
    sets = [w.partition("=") for i, w in enumerate(words) if i and words[i - 1] == "--set"]
    overrides = {key: yaml.safe_load(value) for key, _, value in sets}
    cfg = load_config(ROOT / words[2], overrides)
    for dotted, value in overrides.items():
        obj = cfg
        for key in dotted.split("."):
            obj = getattr(obj, key)
        assert obj == value, dotted


@pytest.mark.parametrize("snippet", SNIPPETS, ids=[s.splitlines()[0][:40] for s in SNIPPETS])
def test_python_snippet_runs(in_workdir, snippet, capsys):
    for node in ast.walk(ast.parse(snippet)):
        if isinstance(node, ast.Import | ast.ImportFrom):
            module = (node.module if isinstance(node, ast.ImportFrom) else node.names[0].name)
            if importlib.util.find_spec(module.split(".")[0]) is None:
                skip_or_fail(f"{module} is not installed (pip install -e '.[test]')")
    namespace: dict = {}
    exec(compile(snippet, "README.md", "exec"), namespace)  # noqa: S102 - the README's code
    printed = capsys.readouterr().out
    rows = len(read_rows(in_workdir / RUN_DIR, "data"))
    for name in ("table", "ds", "df"):
        if name in namespace and not isinstance(namespace[name], types.ModuleType):
            assert len(namespace[name]) == rows, name
    for line in snippet.splitlines():  # `print(...)  # expected` lines: the output shown
        if "print(" in line and "  # " in line:
            assert line.rsplit("  # ", 1)[1].strip() in printed, (line, printed)


def test_row_claims_hold(workdir):
    """The columns 'every row carries' are filled in every row of data/ and instructions/; the
    novelty score is on every instruction, and data rows name their instruction."""
    sentence = re.search(r"Every row carries (.*?)\.\s+[A-Z]", TEXT, re.S).group(1)
    claimed = [c for c in re.findall(r"`(\w+)`", sentence) if c in RECORD_SCHEMA.names]
    assert {"id", "content_hash", "generator", "prompt_ref", "seed"} <= set(claimed)
    out = workdir / RUN_DIR
    data, instructions = read_rows(out, "data"), read_rows(out, "instructions")
    for kind, rows in (("data", data), ("instructions", instructions)):
        for column in claimed:
            assert all(r[column] is not None for r in rows), (kind, column)
    assert all(r["rouge_l_max"] is not None for r in instructions)
    assert {r["task_id"] for r in data} <= {r["id"] for r in instructions}


def test_one_schema_for_every_folder(workdir):
    out = workdir / RUN_DIR
    for kind in ("data", "instructions"):
        for shard in sorted((out / kind).glob("*.parquet")):
            assert pq.read_schema(shard).remove_metadata() == RECORD_SCHEMA.remove_metadata()
    assert len(RECORD_SCHEMA.names) == 56 and "56 columns" in TEXT
