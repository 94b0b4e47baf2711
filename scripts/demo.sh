#!/usr/bin/env bash
# Set up .venv and run the main job: a whole simulated campaign on the digital twin
# (campaigns/target_550nm.yaml), logged to MLflow in ./mlflow.db. Extra arguments go to `autolab run`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export MPLBACKEND=Agg
.venv/bin/autolab run campaigns/target_550nm.yaml "$@"
