#!/usr/bin/env bash
# Installs everything the tests need on a fresh machine and runs every check: ruff, mypy, pytest.
# Extra arguments go to pytest (e.g. `bash scripts/test.sh -k anthropic`).
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests start themselves (none yet for the instrumentation; the receiver's tests add
# prometheus, prometheus-alertmanager and postgresql here).
DEBIAN_PACKAGES=()
if [ ${#DEBIAN_PACKAGES[@]} -gt 0 ]; then
  missing=()
  for p in "${DEBIAN_PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
  fi
fi

python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
# "strict" editable mode gives mypy a static package tree to check.
.venv/bin/pip install -q -e '.[test]' --config-settings editable_mode=strict

.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy -p llmtally
.venv/bin/pytest -q "$@"
