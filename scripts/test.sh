#!/usr/bin/env bash
# Installs everything the tests need on a fresh machine and runs every check: ruff, mypy, pytest.
# Extra arguments go to pytest (e.g. `bash scripts/test.sh -k anthropic`).
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the tests use: PostgreSQL (started by the tests on loopback with a throwaway data directory)
# Prometheus (promtool checks /metrics and unit-tests the alert rules) and Alertmanager (amtool checks the routing).
DEBIAN_PACKAGES=(postgresql prometheus prometheus-alertmanager)
if [ ${#DEBIAN_PACKAGES[@]} -gt 0 ]; then
  missing=()
  for p in "${DEBIAN_PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y -q "${missing[@]}"
  fi
fi

python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
# "strict" editable mode gives mypy a static package tree to check.
.venv/bin/pip install -q -e '.[test]' --config-settings editable_mode=strict

(cd grafana-dashboards/schema-check && npm ci --no-audit --no-fund --silent)  # tsc + @grafana/schema for the dashboards
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy -p llmtally
bash scripts/build-collector.sh  # the test collector (Go, from the module proxy), cached in .cache/otelcol/
.venv/bin/pytest -q "$@"
