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
# The project's own modules, compiled once here: an editable install leaves them to be
# compiled on import, and a process that may not write .pyc files (PYTHONDONTWRITEBYTECODE,
# as this machine's shells set, or -B as multiprocessing's spawn passes) compiles them
# again every time it starts; every Dagster process of a test run imports them.
.venv/bin/python -m compileall -q -j 0 ingestion_assets ingestion_assets_tests bench >/dev/null
