#!/usr/bin/env bash
# Builds the test collector (collector/: OTLP receiver, memory_limiter, batch, OTLP and loadbalancing exporters) into
# .cache/otelcol/otelcol-llmtally from the Go module proxy; skips the build when the binary is newer than the sources.
# Prints the binary's path. Needs Go (see collector/go.mod for the version).
set -euo pipefail
cd "$(dirname "$0")/.."

out=.cache/otelcol/otelcol-llmtally
sources=(collector/go.mod collector/go.sum collector/*.go)

if [ -x "$out" ]; then
  stale=0
  for f in "${sources[@]}"; do [ "$f" -nt "$out" ] && stale=1; done
  if [ "$stale" -eq 0 ]; then
    echo "$out"
    exit 0
  fi
fi

if ! command -v go >/dev/null 2>&1; then
  echo "build-collector: Go is not installed; the collector tests need it" >&2
  exit 1
fi

mkdir -p "$(dirname "$out")"
echo "build-collector: building $out (takes minutes the first time)" >&2
(cd collector && go build -buildvcs=false -trimpath -ldflags='-s -w' -o "../$out.$$.tmp" .)
mv "$out.$$.tmp" "$out"
echo "$out"
