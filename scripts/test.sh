#!/usr/bin/env bash
# Set up .venv and run every check CI runs: ruff, mypy, the import-layer contracts, the test suite.
# Extra arguments go to pytest (e.g. scripts/test.sh -k twin -x).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh dev
export MPLBACKEND=Agg PYTHONHASHSEED=0
echo "== ruff";   .venv/bin/ruff check .
echo "== mypy";   .venv/bin/mypy
echo "== import layers"; .venv/bin/lint-imports --no-cache
echo "== pytest"
set +e
.venv/bin/python -m pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: that is a failure, not a pass" >&2
  exit 1
fi
exit "$rc"
