#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls this).
#
# 1. Sets up what the tests need, idempotently and cached: the go-plugin interop fixtures
#    (built from the Go module proxy into target/go-fixtures), the Python grpcio venv
#    (.deps/python), and the Kubernetes control-plane binaries for intercom-envtest
#    (etcd, kube-apiserver, kube-controller-manager; ~/.cache/intercom-envtest).
#    A missing toolchain fails the run; nothing is skipped.
# 2. Runs scripts/checks.sh: fmt, clippy, docs, `cargo package` of the published crates,
#    the MSRV check. A failed check fails the run, but only after the tests have run too,
#    so one run reports both.
# 3. Builds every test target (this step may download crates).
# 4. Runs the tests inside a private network (and mount) namespace of their own, where the
#    envtest kubelet's pod range (10.213.0.0/16) and the Service range (10.214.0.0/16) are
#    routed to `lo`, so EndpointSlices accept pod IPs, the envtest Service proxy can serve
#    ClusterIPs, and no test traffic can leave the machine. A private copy of /etc/hosts
#    is bind-mounted there for the Service names (`<svc>.<ns>.svc`).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/build-go-fixtures.sh >/dev/null
scripts/setup-python.sh >/dev/null
intercom-envtest/build-control-plane.sh >/dev/null

for tool in unshare ip mount; do
    command -v "$tool" >/dev/null 2>&1 || {
        echo "test.sh: '$tool' is missing (Debian: apt-get install -y util-linux iproute2)" >&2
        exit 1
    }
done

# A one-off build: incremental artifacts would only cost disk.
export CARGO_INCREMENTAL=0
checks=0
scripts/checks.sh || checks=$?
# The examples' `--kubernetes` runs are behind their `kubernetes` feature (so the README
# demo compiles no kube); the suite runs them.
features=(--features greeter/kubernetes,counter/kubernetes)
cargo test --workspace --locked "${features[@]}" --no-run "$@" >/dev/null 2>&1 ||
    cargo test --workspace --locked "${features[@]}" --no-run "$@"

export INTERCOM_ENVTEST_POD_CIDR=10.213.0.0/16
export INTERCOM_ENVTEST_SERVICE_CIDR=10.214.0.0/16
# A private /etc/hosts: the envtest Service proxy publishes `<svc>.<ns>.svc` names in it.
mkdir -p target
hosts="$PWD/target/envtest-hosts"
cp /etc/hosts "$hosts"
export INTERCOM_ENVTEST_HOSTS_FILE=/etc/hosts
tests=0
unshare --user --map-root-user --net --mount -- sh -c '
    ip link set lo up &&
    ip route add local "$INTERCOM_ENVTEST_POD_CIDR" dev lo &&
    ip route add local "$INTERCOM_ENVTEST_SERVICE_CIDR" dev lo &&
    mount --bind "$0" /etc/hosts &&
    exec cargo test --workspace --locked --offline --no-fail-fast "$@"
' "$hosts" "${features[@]}" "$@" || tests=$?
scripts/bench.sh --smoke >/dev/null || tests=$? # the benchmark harness works (no timings)
if [ "$checks" -ne 0 ]; then
    echo "test.sh: scripts/checks.sh failed (its output is above the tests')" >&2
    [ "$tests" -ne 0 ] || tests=1
fi
exit "$tests"
