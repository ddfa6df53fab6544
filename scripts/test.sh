#!/usr/bin/env bash
# The test command: sets up .venv if needed, lints, and runs the whole test suite.
# Extra arguments go to pytest, e.g. scripts/test.sh -k demo_api -x
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# pytest keeps the test modules it rewrote (assertion rewriting) beside them; with
# PYTHONDONTWRITEBYTECODE set, as some shells do, each of the workers rewrote all of them again
# (collection: 8.5 CPU-s a worker against 4.8).
unset PYTHONDONTWRITEBYTECODE
.venv/bin/ruff check ingestion_assets ingestion_assets_tests bench scripts
# The suite runs in TEST_WORKERS processes (pytest-xdist): most of its time is spent waiting
# on servers it started (dagster dev, the daemon, a slow fault, moto), so even 2 cores keep 3
# busy. The tests of one file run in one process, in order (their module fixtures start once),
# except in files marked `spread`. The files are handed out in the order conftest.py gives them,
# the longest first (`SCHEDULE`), not xdist's default of the files with the most tests first,
# which left the few-test files that start `dagster dev` and a browser to the end (docs/testing.md).
# TEST_WORKERS=0 runs everything in one process.
workers=${TEST_WORKERS:-3}
if [ "$workers" = 0 ]; then
  exec .venv/bin/python -m pytest "$@"
fi
exec .venv/bin/python -m pytest -n "$workers" --dist loadgroup --no-loadscope-reorder "$@"
