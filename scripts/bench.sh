#!/usr/bin/env bash
# The benchmark harness (issue 16): intercom against go-plugin v1.8.0 and raw tonic.
#
#   scripts/bench.sh [--rounds N]   full run; writes BENCHMARKS.md (a few minutes)
#   scripts/bench.sh --only 1,5     those scenarios only (8: bench-kube on envtest); prints,
#                                   writes nothing
#   scripts/bench.sh --smoke        a few hundred calls per scenario, one round; proves the
#                                   harness works, asserts no timings, writes nothing; uses
#                                   the dev profile, so it reuses the test suite's build
#
# Builds the peers first: the Go ones from the Go module proxy (the interop fixtures'
# kv-plugin and counter-plugin via scripts/build-go-fixtures.sh into target/go-fixtures/,
# and the go-plugin bench host from bench/go into target/go-bench/, both reusing Go's
# build and module caches), the Rust ones (bench-host, bench-raw-server, bench-stream-plugin, kv-plugin,
# counter-plugin) in release mode. Then runs the driver (bench/src/main.rs), which prints
# one markdown table.
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

# Scenario 8: bench-kube on intercom-envtest (scripts/setup-real-node.sh builds the control
# plane's binaries), in the namespace scripts/envtest-netns.sh makes, as the test suite's
# process-kubelet pass. Its own build: the other peers' intercom has no kube in it.
kube=()
only=""
prev=""
for arg in "$@"; do
    if [ "$prev" = "--only" ]; then only="$arg"; fi
    prev="$arg"
done
if [ -z "$only" ] || [[ ",$only," == *,8,* ]]; then
    scripts/setup-real-node.sh >/dev/null
    cargo build --profile "$([ "$profile" = debug ] && echo dev || echo "$profile")" --quiet \
        -p intercom-bench --features kubernetes --bin bench-kube
    kube_reps=(--reps 5 --concurrent 20)
    [ "$smoke" = 0 ] || kube_reps=(--reps 1 --concurrent 3)
    INTERCOM_ENVTEST_POD_CIDR=10.213.0.0/16 INTERCOM_ENVTEST_SERVICE_CIDR=10.214.0.0/16 \
        scripts/envtest-netns.sh "$TARGET_DIR/$profile/bench-kube" \
        --plugin "$TARGET_DIR/$profile/kv-plugin" "${kube_reps[@]}" >"$TARGET_DIR/bench-kube.json"
    kube=(--kubernetes "$TARGET_DIR/bench-kube.json")
fi

args=(--go-dir "$GO_BENCH" "${kube[@]}" --date "$(date -u '+%Y-%m-%d %H:%M UTC')" --command "scripts/bench.sh${*:+ $*}")
if [ "$smoke" = 0 ]; then
    args+=(--out "$ROOT/BENCHMARKS.md")
fi
exec "$TARGET_DIR/$profile/intercom-bench" "${args[@]}" "$@"
