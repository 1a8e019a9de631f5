#!/usr/bin/env bash
# Runs intercom's Kubernetes e2e suite (tests/tests/e2e_kubernetes.rs) against a real
# cluster made with kind, instead of intercom-envtest's process kubelet.
#
# Needs Docker, kind and kubectl on the machine (the project's own CI machines have no
# container runtime, so CI runs the same suite on intercom-envtest instead).
#
#   tests/e2e-kind/run.sh            # create cluster `intercom-e2e`, build, load, test
#   KEEP_CLUSTER=1 tests/e2e-kind/run.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

CLUSTER="${CLUSTER:-intercom-e2e}"
for tool in docker kind kubectl cargo; do
    command -v "$tool" >/dev/null 2>&1 || { echo "run.sh: '$tool' is required" >&2; exit 1; }
done

if ! kind get clusters | grep -qx "$CLUSTER"; then
    kind create cluster --name "$CLUSTER" --wait 120s
fi
KUBECONFIG_FILE="$(mktemp)"
trap 'rm -f "$KUBECONFIG_FILE"; [ -n "${KEEP_CLUSTER:-}" ] || kind delete cluster --name "$CLUSTER"' EXIT
kind get kubeconfig --name "$CLUSTER" > "$KUBECONFIG_FILE"

# The images the suite names (see PLUGIN_IMAGE, MACRO_IMAGE and SLEEPER_IMAGE in the test file).
docker build -f tests/e2e-kind/Dockerfile.test-plugin -t intercom.test/test-plugin:1 .
docker build -f tests/e2e-kind/Dockerfile.test-plugin --build-arg BIN=macro-plugin -t intercom.test/macro-plugin:1 .
docker build -f tests/e2e-kind/Dockerfile.sleeper -t intercom.test/sleeper:1 tests/e2e-kind
kind load docker-image --name "$CLUSTER" intercom.test/test-plugin:1 intercom.test/macro-plugin:1 intercom.test/sleeper:1

# The host runs outside the cluster here: PortForward works as is; Endpoints mode needs the
# pod network to be reachable from the host (true for kind on Linux via the node's bridge).
INTERCOM_E2E_KUBECONFIG="$KUBECONFIG_FILE" \
    cargo test -p intercom-tests --test e2e_kubernetes -- --test-threads 1
