#!/usr/bin/env bash
# Make Debian's Chromium and its matching chromedriver available for the `browser` tests
# (tests/deploy/test_ui.py). Idempotent: does nothing when both are on PATH. The tests drive this
# system browser through Selenium (pip: selenium) and never download a browser.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
  echo "browser.sh: $(chromium --version 2>/dev/null | head -1); $(chromedriver --version | head -1)"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "browser.sh: chromium/chromedriver missing and installing them needs root (apt-get)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium chromium-driver fonts-dejavu-core >/dev/null
echo "browser.sh: $(chromium --version 2>/dev/null | head -1); $(chromedriver --version | head -1)"
