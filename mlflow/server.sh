#!/usr/bin/env bash
# Start a real MLflow tracking server for paretrain, bound to loopback only.
#   mlflow/server.sh                       # http://127.0.0.1:5000, ./mlflow.db, ./mlartifacts
#   PORT=5001 STORE=sqlite:///other.db ARTIFACTS=/tmp/art mlflow/server.sh
# MLflow's job runner (GenAI evaluation jobs, which paretrain never submits: eight more processes)
# stays off unless MLFLOW_SERVER_ENABLE_JOB_EXECUTION=true is set.
# Then: export MLFLOW_TRACKING_URI=http://127.0.0.1:5000  (or pass --tracking-uri to paretrain)
set -euo pipefail
HOST="${HOST:-127.0.0.1}"
PORT="${PORT:-5000}"
STORE="${STORE:-sqlite:///mlflow.db}"
ARTIFACTS="${ARTIFACTS:-./mlartifacts}"
here="$(cd "$(dirname "$0")/.." && pwd)"
MLFLOW="${MLFLOW:-$here/.venv/bin/mlflow}"
[ -x "$MLFLOW" ] || MLFLOW=mlflow
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION="${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false}"
mkdir -p "$ARTIFACTS"
exec "$MLFLOW" server --host "$HOST" --port "$PORT" \
  --backend-store-uri "$STORE" --artifacts-destination "$ARTIFACTS" --serve-artifacts
