#!/usr/bin/env bash
# Make PostgreSQL's server binaries (initdb, postgres) and an unprivileged `postgres` user available
# for the `stack` tests (tests/deploy/test_stack.py). Idempotent: does nothing when both exist.
#
# The tests never use a system cluster: they initdb a throwaway one in a temporary folder, on a
# free 127.0.0.1 port, and delete it afterwards. PostgreSQL refuses to run as root, so when the
# tests run as root (CI containers) they start the server as the `postgres` user that Debian's
# package creates; AUTOLAB_PG_USER names another unprivileged user if wanted.
# Needs root (apt-get); the Python driver (psycopg2-binary) comes from pip, not from here.
set -euo pipefail

have_bins() {
  command -v initdb >/dev/null 2>&1 || compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null
}

if ! have_bins; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "postgres.sh: PostgreSQL is missing and installing it needs root (apt-get)" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends postgresql >/dev/null
fi

if ! id -u "${AUTOLAB_PG_USER:-postgres}" >/dev/null 2>&1; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "postgres.sh: no user ${AUTOLAB_PG_USER:-postgres} and creating one needs root" >&2
    exit 1
  fi
  useradd --system --no-create-home --shell /usr/sbin/nologin "${AUTOLAB_PG_USER:-postgres}"
fi

bin=$(command -v initdb 2>/dev/null || ls -d /usr/lib/postgresql/*/bin/initdb | sort -V | tail -1)
echo "postgres.sh: $("$bin" --version) at $(dirname "$bin"); server user ${AUTOLAB_PG_USER:-postgres}"
