#!/usr/bin/env bash
# The benchmark harness (issue 16): intercom against go-plugin v1.8.0 and raw tonic.
#
#   scripts/bench.sh [--rounds N]   full run; writes BENCHMARKS.md (a few minutes)
#   scripts/bench.sh --only 1,5     those scenarios only; prints, writes nothing
#   scripts/bench.sh --smoke        a few hundred calls per scenario, one round; proves the
#                                   harness works, asserts no timings, writes nothing; uses
#                                   the dev profile, so it reuses the test suite's build
#
# Builds the peers first: the Go ones from the Go module proxy (the interop fixtures'
# kv-plugin and counter-plugin via scripts/build-go-fixtures.sh into target/go-fixtures/,
# and the go-plugin bench host from bench/go into target/go-bench/, both reusing Go's
# build and module caches), the Rust ones (bench-host, bench-raw-server, bench-stream-plugin, kv-plugin,
# counter-plugin) in release mode, and for full runs a second kv-plugin with aws-lc's CPU
# jitter entropy compiled out (target/nojitter). Then runs the driver (bench/src/main.rs),
# which prints one markdown table.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

smoke=0
for arg in "$@"; do
    if [ "$arg" = "--smoke" ]; then smoke=1; fi
done

GO_FIXTURES="$(scripts/build-go-fixtures.sh | tail -n 1)"
GO_BENCH="$ROOT/target/go-bench"
mkdir -p "$GO_BENCH"
# kvpb and counterpb both declare proto.Empty (as go-plugin's two examples do, which are
# never linked together); the host links both, so let the second registration warn.
(cd bench/go && GOFLAGS="${GOFLAGS:+$GOFLAGS }-mod=readonly" go build \
    -ldflags "-X google.golang.org/protobuf/reflect/protoregistry.conflictPolicy=warn" \
    -o "$GO_BENCH/" ./cmd/...)
cp "$GO_FIXTURES/kv-plugin" "$GO_FIXTURES/counter-plugin" "$GO_BENCH/"

profile=release
[ "$smoke" = 0 ] || profile=dev
cargo build --profile "$profile" --quiet -p intercom-bench -p kv -p bidirectional
TARGET_DIR="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
[ "$profile" = release ] || profile=debug

# For the launch rows only: the same kv-plugin with aws-lc's CPU jitter entropy compiled
# out (its own target dir, since the switch rebuilds aws-lc-sys; slow the first time).
if [ "$smoke" = 0 ]; then
    AWS_LC_SYS_NO_JITTER_ENTROPY=1 CARGO_TARGET_DIR="$TARGET_DIR/nojitter" \
        cargo build --release --quiet -p kv --bin kv-plugin
    nojitter=(--nojitter-plugin "$TARGET_DIR/nojitter/release/kv-plugin")
else
    nojitter=()
fi

args=(--go-dir "$GO_BENCH" "${nojitter[@]}" --date "$(date -u '+%Y-%m-%d %H:%M UTC')" --command "scripts/bench.sh${*:+ $*}")
if [ "$smoke" = 0 ]; then
    args+=(--out "$ROOT/BENCHMARKS.md")
fi
exec "$TARGET_DIR/$profile/intercom-bench" "${args[@]}" "$@"
