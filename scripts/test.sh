#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls this).
#
# 1. Sets up what the tests need, idempotently and cached: the go-plugin interop fixtures
#    (built from the Go module proxy into target/go-fixtures), the Python grpcio venv
#    (.deps/python), and what intercom-envtest needs (scripts/setup-real-node.sh): the
#    Kubernetes binaries (etcd, kube-apiserver, kube-controller-manager, kubelet,
#    kube-scheduler, kube-proxy, CoreDNS; ~/.cache/intercom-envtest) and Debian's
#    containerd, runc, CNI plugins and iptables for the real node.
#    A missing toolchain fails the run. The process pass leaves out two named tests (below,
#    with why); the real-node pass runs them.
# 2. Runs scripts/checks.sh: fmt, clippy, docs, `cargo package` of the published crates,
#    the MSRV check. A failed check fails the run, but only after the tests have run too,
#    so one run reports both.
# 3. Builds every test target (this step may download crates).
# 4. Runs the tests inside a private network (and mount) namespace of their own, where the
#    envtest kubelet's pod range (10.213.0.0/16) and the Service range (10.214.0.0/16) are
#    routed to `lo`, so EndpointSlices accept pod IPs, the envtest Service proxy can serve
#    ClusterIPs, and no test traffic can leave the machine. A private copy of /etc/hosts
#    is bind-mounted there for the Service names (`<svc>.<ns>.svc`), and a tmpfs over /tmp
#    takes every temporary directory with it when the run ends (each e2e binary's
#    control plane lives for the whole binary and is never dropped).
# 5. Runs the Kubernetes e2e suite again on a real node (containerd, runc, CNI bridge,
#    kubelet, kube-scheduler, kube-proxy, CoreDNS) inside the namespaces
#    intercom-envtest/real-node-ns.sh creates (as root; nothing reaches the machine).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/build-go-fixtures.sh >/dev/null
scripts/setup-python.sh >/dev/null
scripts/setup-real-node.sh >/dev/null

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
tests=0
scripts/envtest-netns.sh cargo test --workspace --locked --offline --no-fail-fast \
    "${features[@]}" "$@" -- --skip e2e_a_host_pod_launches_calls_and_kills_its_plugins_in_cluster \
    --skip e2e_containerd_ || tests=$?
# (Both run in the real-node pass: an in-cluster host needs pods with a network of their
# own, intercom-build's containerd round trips need real root for runc.)
# The e2e suite on the real node, the tests the process pass leaves out included.
real_node_tests=(--test e2e_kubernetes --test e2e_faults --test e2e_trust --test e2e_host_death
    --test e2e_host_namespace --test e2e_strangers --test e2e_in_cluster_host --test real_node
    --test image_containerd)
INTERCOM_ENVTEST_POD_CIDR=10.213.0.0/16 INTERCOM_ENVTEST_SERVICE_CIDR=10.214.0.0/16 \
    intercom-envtest/real-node-ns.sh cargo test --workspace --locked --offline --no-fail-fast \
    "${features[@]}" "${real_node_tests[@]}" "$@" || tests=$?
# And the examples that run their plugin on Kubernetes (their binaries as images).
INTERCOM_ENVTEST_POD_CIDR=10.213.0.0/16 INTERCOM_ENVTEST_SERVICE_CIDR=10.214.0.0/16 \
    intercom-envtest/real-node-ns.sh cargo test --locked --offline --no-fail-fast \
    -p greeter -p counter "${features[@]}" --test run "$@" -- kubernetes || tests=$?
scripts/bench.sh --smoke >/dev/null || tests=$? # the benchmark harness works (no timings)
if [ "$checks" -ne 0 ]; then
    echo "test.sh: scripts/checks.sh failed (its output is above the tests')" >&2
    [ "$tests" -ne 0 ] || tests=1
fi
exit "$tests"
