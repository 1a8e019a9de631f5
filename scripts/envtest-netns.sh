#!/usr/bin/env bash
# Runs a command in a user + network + mount namespace of its own, as intercom-envtest's
# process kubelet needs it: `lo` up, the pod range ($INTERCOM_ENVTEST_POD_CIDR) and the Service
# range ($INTERCOM_ENVTEST_SERVICE_CIDR) routed to it (so EndpointSlices accept pod IPs and the
# envtest Service proxy can serve ClusterIPs), a private /etc/hosts (the Service proxy publishes
# `<svc>.<ns>.svc` names in it; a copy in target/envtest-hosts) and a private /tmp. Nothing
# it does reaches the machine's own network or files.
#
#   INTERCOM_ENVTEST_POD_CIDR=... INTERCOM_ENVTEST_SERVICE_CIDR=... scripts/envtest-netns.sh CMD [ARG...]
#
# Used by scripts/test.sh (the process-kubelet pass) and scripts/bench.sh (bench-kube).
set -euo pipefail

: "${INTERCOM_ENVTEST_POD_CIDR:?set the pod range to route, e.g. 10.213.0.0/16}"
: "${INTERCOM_ENVTEST_SERVICE_CIDR:?set the Service range to route, e.g. 10.214.0.0/16}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
mkdir -p "$ROOT/target"
hosts="$ROOT/target/envtest-hosts"
cp /etc/hosts "$hosts"
export INTERCOM_ENVTEST_HOSTS_FILE=/etc/hosts
exec unshare --user --map-root-user --net --mount -- sh -c '
    ip link set lo up &&
    ip route add local "$INTERCOM_ENVTEST_POD_CIDR" dev lo &&
    ip route add local "$INTERCOM_ENVTEST_SERVICE_CIDR" dev lo &&
    mount --bind "$0" /etc/hosts &&
    mount -t tmpfs -o mode=1777 tmpfs /tmp &&
    exec "$@"' "$hosts" "$@"
