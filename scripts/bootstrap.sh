#!/usr/bin/env bash
# Create ./.venv and install autolab into it, pinned by constraints.txt (torch 2.13.0, the CPU build;
# without the pin botorch may pull a newer torch with several GB of CUDA packages).
# Idempotent: the install is skipped when pyproject.toml, constraints.txt and the extras asked for
# are unchanged since the last successful one.
# Usage: scripts/bootstrap.sh [EXTRAS]   e.g. scripts/bootstrap.sh dev
set -euo pipefail
cd "$(dirname "$0")/.."
extras=${1:-}
python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "autolab needs Python >= 3.11; $python is $("$python" --version 2>&1)" >&2
  exit 1
fi
[ -x .venv/bin/python ] || "$python" -m venv .venv
stamp=.venv/.autolab-install
want="$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1) [${extras}]"
if ! grep -qxF "$want" "$stamp" 2>/dev/null; then
  echo "Setting up .venv (autolab${extras:+[$extras]}) ..." >&2
  # (the filter drops pip's notes about index folders this machine's pip.conf names but lacks)
  quiet() { "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }
  quiet .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  # uv installs the same pinned set as pip, downloading and unpacking in parallel (a fresh
  # set-up 129 s -> 84 s on 2 cores). Neither byte-compiles what it installs: compiling all
  # ~20,000 installed modules took most of a set-up (~110 s of CPU), though autolab's processes
  # import a fifth of them; scripts/warm_imports.py compiles those below (~20 s). uv
  # reads no pip.conf, so it is given pip's find-links (where this machine keeps the CPU build of
  # torch that constraints.txt pins). pip stays the fallback: no uv on the index, or uv failed.
  target=".${extras:+[$extras]}"
  links=$(.venv/bin/python -m pip config get global.find-links 2>/dev/null || true)
  links=${PIP_FIND_LINKS:-$links}
  uv_links=()
  for dir in $links; do [ -d "$dir" ] && uv_links+=(--find-links "$dir"); done
  if ! { quiet .venv/bin/python -m pip install -q uv >/dev/null 2>&1 \
      && .venv/bin/uv pip install -q --python .venv/bin/python \
         "${uv_links[@]}" -c constraints.txt -e "$target"; }; then
    echo "uv unavailable or failed: installing with pip" >&2
    quiet .venv/bin/python -m pip install -q --no-compile -c constraints.txt -e "$target"
  fi
  env -u PYTHONDONTWRITEBYTECODE .venv/bin/python scripts/warm_imports.py core &
  env -u PYTHONDONTWRITEBYTECODE .venv/bin/python scripts/warm_imports.py extras
  wait
  echo "$want" >> "$stamp"
fi
# Byte-compile autolab's own modules: where PYTHONDONTWRITEBYTECODE is set (our development
# machines set it) Python never caches them, and every `autolab` process (the suite starts many)
# compiles all of autolab again, ~0.7 s of CPU each (the warm-up above compiled what it imported,
# and autolab is installed editable, from its source). compileall writes the caches regardless,
# skips what is up to date, and imports then read them (stale ones are recompiled in memory).
.venv/bin/python -m compileall -q autolab >/dev/null
