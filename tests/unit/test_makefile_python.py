"""`make run`/`make test` on a Python older than 3.11 stop with one clear line, no venv built.

The fake interpreter runs the Makefile's version check with real Python but reports 3.10, and
refuses anything else (e.g. `-m venv`), so a Makefile that skipped the check would fail
differently and leave a trace.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

FAKE = """#!/bin/sh
if [ "$1" = "--version" ]; then echo "Python 3.10.12"; exit 0; fi
if [ "$1" = "-c" ]; then
  exec {real} -c "import sys; sys.version_info = (3, 10, 12, 'final', 0); exec(sys.argv[2])" \\
    -c "$2"
fi
echo "$@" >> {calls}
exit 3
"""


@pytest.fixture
def old_python(tmp_path: Path) -> Path:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    fake = tmp_path / "bin" / "python3"
    fake.parent.mkdir()
    fake.write_text(FAKE.format(real=sys.executable, calls=tmp_path / "calls"))
    fake.chmod(0o755)
    return fake


def _make(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "--no-print-directory", "-C", str(ROOT), *args],
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("target", ["check-python", "run", "test"])
def test_old_python_stops_with_a_clear_message_before_any_venv(old_python, tmp_path, target):
    venv = tmp_path / "venv"
    done = _make(target, f"PYTHON={old_python}", f"VENV={venv}")
    assert done.returncode != 0
    assert (f"instructbeam needs Python 3.11+, but {old_python} is Python 3.10.12"
            in done.stderr), done.stderr
    assert not venv.exists()
    assert not (tmp_path / "calls").exists()  # nothing but the check ran


def test_current_python_passes_the_check():
    done = _make("check-python", f"PYTHON={sys.executable}")
    assert done.returncode == 0 and done.stderr == "", done.stderr
