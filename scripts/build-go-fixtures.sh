#!/usr/bin/env bash
# Builds the Go interop fixtures (tests/fixtures/go) into target/go-fixtures/:
#   kv-plugin kv-host counter-plugin counter-host reverse-plugin reverse-host
#
# Idempotent: `go build` reuses the normal Go build cache (GOCACHE) and module cache
# (GOMODCACHE), so a second run only relinks. The generated protobuf code is committed
# (regenerate with tests/fixtures/go/generate.sh); building needs only go and the Go
# module proxy (first run). Exits non-zero if go is missing or a build fails.
# Prints the output directory on the last line of stdout.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SRC="$ROOT/tests/fixtures/go"
OUT="$ROOT/target/go-fixtures"
BINS=(kv-plugin kv-host counter-plugin counter-host reverse-plugin reverse-host)

if ! command -v go >/dev/null 2>&1; then
    echo "build-go-fixtures: error: 'go' not found in PATH (Go >= 1.24 is required)" >&2
    exit 1
fi

mkdir -p "$OUT"
cd "$SRC"
# Never let go.mod/go.sum be rewritten by a build.
export GOFLAGS="${GOFLAGS:+$GOFLAGS }-mod=readonly"
# One `go build` for all six main packages (shares the work; -o DIR/ writes one binary each).
go build -o "$OUT/" ./cmd/...
for bin in "${BINS[@]}"; do
    [ -x "$OUT/$bin" ] || { echo "build-go-fixtures: error: $OUT/$bin was not built" >&2; exit 1; }
done
echo "build-go-fixtures: built ${BINS[*]} with $(go version | cut -d' ' -f3)" >&2
echo "$OUT"
