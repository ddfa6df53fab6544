#!/usr/bin/env bash
# Sets up the project and runs it: the demo API on 127.0.0.1:8765, the webhook receiver on
# 127.0.0.1:8766 (the demo API posts signed events to it when records are mutated) and
# `dagster dev` (UI on http://127.0.0.1:3000), with DAGSTER_HOME in ./.dagster_home and data
# in ./data. Ports: DEMO_API_PORT, WEBHOOK_PORT, DAGSTER_PORT. DEV_DAGSTER_HOME: another instance folder (its
# dagster.yaml is replaced by instance/dagster.yaml). DEV_SKIP_SETUP=1 skips the install step.
#
# Stopping: Ctrl-C, SIGINT or SIGTERM to this script. `dagster dev` gets SIGINT first (what
# it handles as a clean shutdown of its webserver, daemon and code servers) and up to
# DEV_STOP_GRACE_SECONDS (10) to exit, then the demo API and the webhook receiver; only
# what is still running after that is killed. Everything is gone within ~13 s.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${DEV_SKIP_SETUP:-}" != 1 ]; then
  scripts/setup.sh
fi

DEMO_API_PORT=${DEMO_API_PORT:-8765}
DAGSTER_PORT=${DAGSTER_PORT:-3000}
WEBHOOK_PORT=${WEBHOOK_PORT:-8766}
GRACE=${DEV_STOP_GRACE_SECONDS:-10}
export DAGSTER_HOME=${DEV_DAGSTER_HOME:-$PWD/.dagster_home}
export INGESTION_DATA_DIR=${INGESTION_DATA_DIR:-$PWD/data}
mkdir -p "$DAGSTER_HOME" "$INGESTION_DATA_DIR"
cp instance/dagster.yaml "$DAGSTER_HOME/dagster.yaml"
# The demo API's credentials (demo values, not secrets), exported the way a user exports real
# ones: the YAML reads them with {env: NAME}.
# DEMO_API_URL tells the YAML (${DEMO_API_URL:-...}) where the demo API listens.
eval "$(.venv/bin/python -m ingestion_assets.demo_api --print-env --port "$DEMO_API_PORT")"
# `dagster dev` warns on every start that `dg dev` supersedes it. This project is not a `dg`
# project yet (that move is tracked separately), so the warning asks nothing of a user here:
# it is silenced, and only that warning class.
export PYTHONWARNINGS="ignore:Function \`dev_command\` is superseded${PYTHONWARNINGS:+,$PYTHONWARNINGS}"

pids=()   # each child's pid, which is also its process group id
names=()
stopping=0
running() {
  # Whether process $1 still runs (one that exited and waits to be reaped does not).
  ps -o stat= -p "$1" 2>/dev/null | grep -qv '^Z'
}
running_in_group() {
  # Whether any process of process group $1 still runs.
  ps -e -o pgid=,stat= | awk -v g="$1" '$1 == g && $2 !~ /^Z/ {n++} END {exit n ? 0 : 1}'
}
any_running() {  # $1: running or running_in_group
  local pid
  for pid in "${pids[@]}"; do
    if "$1" "$pid"; then return 0; fi
  done
  return 1
}
cleanup() {
  [ "$stopping" = 1 ] && return
  stopping=1
  trap '' INT TERM  # a second Ctrl-C does not cut the grace period short
  echo "stopping (up to ${GRACE}s for dagster dev to shut down cleanly)..."
  local i pid deadline last=$((${#pids[@]} - 1))
  for pid in "${pids[@]}"; do
    disown "$pid" 2>/dev/null || true  # no "Killed"/"Interrupt" job report from bash
  done
  # dagster dev first (the last child), while the APIs its sensors call still answer: its
  # whole group gets SIGINT, as a terminal's Ctrl-C delivers it, and it shuts its webserver,
  # daemon and code servers down cleanly.
  pid=${pids[$last]}
  kill -INT -- "-$pid" 2>/dev/null || true
  deadline=$((SECONDS + GRACE))
  while running "$pid" && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.2; done
  if running "$pid"; then
    echo "${names[$last]} still running after ${GRACE}s; ending it"
    kill -KILL -- "-$pid" 2>/dev/null || true
  fi
  # Then the demo API and the webhook receiver, which stop at once on SIGINT.
  for ((i = 0; i < last; i++)); do kill -INT -- "-${pids[$i]}" 2>/dev/null || true; done
  deadline=$((SECONDS + 2))
  while any_running running_in_group && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.2; done
  for i in "${!pids[@]}"; do
    pid=${pids[$i]}
    if running_in_group "$pid"; then
      echo "ending what is left of ${names[$i]}"
      kill -KILL -- "-$pid" 2>/dev/null || true
    fi
  done
  deadline=$((SECONDS + 1))  # killed processes release their ports once they are gone
  while any_running running_in_group && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.2; done
  echo "stopped"
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT
trap 'cleanup; exit 143' TERM

# Each child leads its own process group (setsid), with SIGINT at its default: a script
# started in the background begins with SIGINT ignored, its children would inherit that,
# and dagster dev (which maps SIGTERM to its SIGINT handler) could then not be stopped.
start_in_own_group() {  # $1: a name for messages; then the command
  names+=("$1")
  shift
  setsid .venv/bin/python -c \
    'import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execv(sys.argv[1], sys.argv[1:])' \
    "$@" &
  pids+=($!)
}
start_in_own_group "the webhook receiver" \
  .venv/bin/python -m ingestion_assets.webhooks --port "$WEBHOOK_PORT"
start_in_own_group "the demo API" .venv/bin/python -m ingestion_assets.demo_api \
  --port "$DEMO_API_PORT" --webhooks-to "http://127.0.0.1:$WEBHOOK_PORT"
start_in_own_group "dagster dev" .venv/bin/dagster dev -h 127.0.0.1 -p "$DAGSTER_PORT"
echo "demo API: $DEMO_API_URL   webhooks: http://127.0.0.1:$WEBHOOK_PORT   Dagster UI: http://127.0.0.1:$DAGSTER_PORT   (Ctrl-C stops all)"
# `wait` returns early when a trapped signal arrives; then the trap has already cleaned up.
wait -n "${pids[@]}" || true
