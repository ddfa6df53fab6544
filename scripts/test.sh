#!/usr/bin/env bash
# The test command: sets up .venv if needed, lints, and runs the whole test suite.
# Extra arguments go to pytest, e.g. scripts/test.sh -k demo_api -x
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
.venv/bin/ruff check ingestion_assets ingestion_assets_tests bench scripts
exec .venv/bin/python -m pytest "$@"
