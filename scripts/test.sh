#!/usr/bin/env bash
# Set up .venv and run every check CI runs: ruff, mypy, the import-layer contracts, the test suite.
# The suite includes the deployment checks, so this also makes sure PostgreSQL, Chromium with its
# chromedriver, and docker-compose (for `docker-compose config`) are installed (Debian packages;
# needs root the first time, nothing happens when they are there).
# Extra arguments go to pytest (e.g. scripts/test.sh -k twin -x).
set -euo pipefail
cd "$(dirname "$0")/.."
# The system packages (apt: network and dpkg) install beside the venv (uv: network and CPU), one
# after the other among themselves (apt takes a lock); their output is shown once both are done.
system_packages() {
  bash scripts/ci/postgres.sh
  bash scripts/ci/browser.sh
  if ! command -v docker-compose >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-compose \
      >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      --no-install-recommends docker-compose >/dev/null; }
  fi
}
system_log=$(mktemp)
mypy_log=$(mktemp)
mypy_pid=
( set -e; system_packages ) >"$system_log" 2>&1 &
system_pid=$!
# a step that fails before the end (set -e) must not leave a background step running on its own
trap 'kill "$system_pid" $mypy_pid 2>/dev/null || true; rm -f "$system_log" "$mypy_log"' EXIT
bash scripts/bootstrap.sh "dev,deploy,notebooks,ray,benchmark,ocean"
# mypy needs only the venv and takes 1.5-2 min of one core on a fresh clone: it runs beside the
# system packages' installs and the suite, its verdict read at the end; niced, so it takes what
# the suite leaves and does not slow the timing-sensitive virtual-lab tests
nice -n 10 .venv/bin/mypy >"$mypy_log" 2>&1 &
mypy_pid=$!
system_rc=0
wait "$system_pid" || system_rc=$?
cat "$system_log"
if [ "$system_rc" -ne 0 ]; then
  echo "installing the system packages failed (exit $system_rc)" >&2
  exit "$system_rc"
fi
export MPLBACKEND=Agg PYTHONHASHSEED=0
# Let the suite's processes cache what they compile: pytest's rewritten test modules (each xdist
# worker otherwise rewrites every test file again, ~10 s of CPU) and the modules only tests import.
# Machines that set PYTHONDONTWRITEBYTECODE (ours do) would make every process compile them anew.
unset PYTHONDONTWRITEBYTECODE
# xdist workers have no terminal: a fixed width keeps rich from eliding the CLI lines tests read
export COLUMNS=200
# Everything above installed what the stack, browser and notebook tests need: skipping them now
# would hide a broken set-up, so tests/conftest.py turns such skips into failures.
export AUTOLAB_REQUIRE_ALL_TESTS=1
echo "== ruff";   .venv/bin/ruff check .
echo "== import layers"; .venv/bin/lint-imports --no-cache
echo "== pytest"
set +e
# four workers on two cores: the pty, server, Ray and browser tests wait on the wall clock (a
# third of the workers' time), so the CPUs were 74 % busy at three workers; at four the same
# suite took 512 s against 605 s (CPUs ~84 % busy; the workers end within 20 s of each other).
# One test file per worker (module fixtures and in-file order stay as written); the 25 slowest
# tests are listed so CI's time budget (15 min on 2 cores) is watched where it goes
.venv/bin/python -m pytest -n 4 --dist loadfile --durations=25 "$@"
rc=$?
echo "== mypy (started after the venv)"
wait "$mypy_pid"
mypy_rc=$?
cat "$mypy_log"
set -e
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: that is a failure, not a pass" >&2
  exit 1
fi
if [ "$mypy_rc" -ne 0 ]; then
  echo "mypy failed (exit $mypy_rc)" >&2
  [ "$rc" -ne 0 ] || rc=$mypy_rc
fi
exit "$rc"
