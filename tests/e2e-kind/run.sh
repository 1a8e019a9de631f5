#!/usr/bin/env bash
# Runs intercom's Kubernetes e2e suite against a cluster made with kind, instead of
# intercom-envtest (whose real node runs the same suite in scripts/test.sh).
#
# Needs kind (and the container engine it runs its node in) and kubectl. No base image
# and no registry: every image is built from the locally built test binaries by
# intercom-build's `intercom-image` (the binary at its own path, the shared libraries it
# needs, /usr/bin/env, a writable /tmp) and loaded with `kind load image-archive`.
#
#   tests/e2e-kind/run.sh            # create cluster `intercom-e2e`, build, load, test
#   KEEP_CLUSTER=1 tests/e2e-kind/run.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

CLUSTER="${CLUSTER:-intercom-e2e}"
for tool in kind kubectl cargo; do
    command -v "$tool" >/dev/null 2>&1 || { echo "run.sh: '$tool' is required" >&2; exit 1; }
done

if ! kind get clusters | grep -qx "$CLUSTER"; then
    kind create cluster --name "$CLUSTER" --wait 120s
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"; [ -n "${KEEP_CLUSTER:-}" ] || kind delete cluster --name "$CLUSTER"' EXIT
kind get kubeconfig --name "$CLUSTER" >"$work/kubeconfig"

# The images the suite names (PLUGIN_IMAGE, MACRO_IMAGE, SLEEPER_IMAGE, HOST_IMAGE in
# tests/src/kubernetes/mod.rs), from the same debug binaries the tests run.
cargo build -p intercom-tests --bins
cargo build -p intercom-build --features image --bin intercom-image
image() { # <binary> <reference> [args...]
    local binary="$1" reference="$2"
    shift 2
    target/debug/intercom-image "$binary" --tag "$reference" -o "$work/image.tar" \
        --dest "$binary" --file /usr/bin/env:/usr/bin/env --dir /tmp:1777 \
        --kind-load "$CLUSTER" "$@" >/dev/null
}
image "$PWD/target/debug/test-plugin" intercom.test/test-plugin:1 --user 65532:65532
image "$PWD/target/debug/macro-plugin" intercom.test/macro-plugin:1 --user 65532:65532
image "$PWD/target/debug/test-host" intercom.test/test-host:1 --user 65532:65532
image /bin/sleep intercom.test/sleeper:1 --user 65532:65532

# The host runs outside the cluster here: PortForward works as is; Endpoints mode needs the
# pod network to be reachable from the host (true for kind on Linux via the node's bridge).
INTERCOM_E2E_KUBECONFIG="$work/kubeconfig" \
    cargo test -p intercom-tests --test e2e_kubernetes -- --test-threads 1
