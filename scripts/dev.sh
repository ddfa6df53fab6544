#!/usr/bin/env bash
# Sets up the project and runs it: the demo API on 127.0.0.1:8765, the webhook receiver on
# 127.0.0.1:8766 (the demo API posts signed events to it when records are mutated) and
# `dagster dev` (UI on http://127.0.0.1:3000), with DAGSTER_HOME in ./.dagster_home and data
# in ./data. Ctrl-C stops all three. Ports: DEMO_API_PORT, WEBHOOK_PORT, DAGSTER_PORT.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

DEMO_API_PORT=${DEMO_API_PORT:-8765}
DAGSTER_PORT=${DAGSTER_PORT:-3000}
WEBHOOK_PORT=${WEBHOOK_PORT:-8766}
export DAGSTER_HOME="$PWD/.dagster_home"
export INGESTION_DATA_DIR=${INGESTION_DATA_DIR:-$PWD/data}
mkdir -p "$DAGSTER_HOME" "$INGESTION_DATA_DIR"
cp instance/dagster.yaml "$DAGSTER_HOME/dagster.yaml"
# The demo API's credentials (demo values, not secrets), exported the way a user exports real
# ones: the YAML reads them with {env: NAME}.
# DEMO_API_URL tells the YAML (${DEMO_API_URL:-...}) where the demo API listens.
eval "$(.venv/bin/python -m ingestion_assets.demo_api --print-env --port "$DEMO_API_PORT")"

pids=()
cleanup() {
  # dagster dev does not stop promptly on SIGTERM: each child runs in its own process group
  # and the whole group is ended.
  for pid in "${pids[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || true; done
  sleep 2
  for pid in "${pids[@]}"; do kill -KILL -- "-$pid" 2>/dev/null || true; done
}
trap cleanup EXIT INT TERM

setsid .venv/bin/python -m ingestion_assets.webhooks --port "$WEBHOOK_PORT" &
pids+=($!)
setsid .venv/bin/python -m ingestion_assets.demo_api --port "$DEMO_API_PORT" \
  --webhooks-to "http://127.0.0.1:$WEBHOOK_PORT" &
pids+=($!)
setsid .venv/bin/dagster dev -h 127.0.0.1 -p "$DAGSTER_PORT" &
pids+=($!)
echo "demo API: $DEMO_API_URL   webhooks: http://127.0.0.1:$WEBHOOK_PORT   Dagster UI: http://127.0.0.1:$DAGSTER_PORT   (Ctrl-C stops all)"
wait -n "${pids[@]}"
