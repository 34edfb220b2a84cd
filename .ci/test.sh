#!/usr/bin/env bash
# The whole test suite: lint, then pytest (unit, golden, pipeline, e2e on a real vLLM CPU
# server, demo-config smoke runs). Prints its own duration. pytest's exit 5 ("no tests ran")
# is a failure here, not a pass.
set -u
cd "$(dirname "$0")/.."
start=$(date +%s)
bash .ci/browser-deps.sh || { echo "could not install the browser for the report test"; exit 1; }
.venv/bin/ruff check . || { echo "ruff check failed"; exit 1; }
.venv/bin/python -m pytest "$@"
rc=$?
echo "make test: pytest exit $rc, $(( $(date +%s) - start )) s in all"
if [ "$rc" -eq 5 ]; then echo "no tests were collected: failing"; exit 1; fi
exit "$rc"
