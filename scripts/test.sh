#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls this).
#
# Sets up what the tests need, idempotently and cached: the Go go-plugin interop fixtures
# (built from the Go module proxy into target/go-fixtures) and the Python grpcio venv
# (.deps/python). A missing toolchain fails the run; nothing is skipped.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/build-go-fixtures.sh >/dev/null
scripts/setup-python.sh >/dev/null

cargo test --workspace --locked --no-fail-fast "$@"
