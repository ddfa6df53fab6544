#!/usr/bin/env bash
# Creates .venv (if missing) and installs the project with its test extras. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
# uv (from PyPI, into the venv) installs the ~190 packages of a fresh venv in about a
# minute, where pip took five to six on 2 cores; pip remains the fallback.
if .venv/bin/python -m pip install --quiet "uv>=0.5"; then
  # --compile-bytecode as pip does: processes started with -B (multiprocessing's spawn) never
  # write .pyc files, and without them each compiled Dagster anew (the suite took 20 min).
  VIRTUAL_ENV="$PWD/.venv" .venv/bin/uv pip install --quiet --compile-bytecode \
    --python .venv/bin/python -e ".[dev]"
else
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e ".[dev]"
fi
