#!/usr/bin/env bash
# Sets up what intercom-envtest's real node needs, idempotently and cached:
#
# 1. Debian packages, installed only when a command is missing: containerd (with ctr),
#    runc, containernetworking-plugins (the CNI bridge, host-local, loopback and portmap
#    plugins under /usr/lib/cni) and iptables (kube-proxy's iptables mode).
# 2. The Kubernetes binaries: the control plane and the node's kubelet, kube-scheduler,
#    kube-proxy and CoreDNS, built from the Go module proxy into the envtest cache by
#    intercom-envtest/build-control-plane.sh (nothing is built when the cache is current).
#
# Usage: scripts/setup-real-node.sh   (as root; prints the bin directory last)
# A missing tool that cannot be installed fails the run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

log() { printf 'setup-real-node: %s\n' "$*" >&2; }

missing=()
need() { # <command> <package>
    command -v "$1" >/dev/null 2>&1 || [[ -x "/usr/sbin/$1" ]] || missing+=("$2")
}
need containerd containerd
need ctr containerd
need runc runc
need iptables iptables
[[ -x /usr/lib/cni/bridge && -x /usr/lib/cni/host-local && -x /usr/lib/cni/loopback ]] \
    || missing+=(containernetworking-plugins)
for tool in unshare nsenter ip mount flock; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$([[ $tool == ip ]] && echo iproute2 || echo util-linux)")
done

if ((${#missing[@]})); then
    mapfile -t packages < <(printf '%s\n' "${missing[@]}" | sort -u)
    [[ "$(id -u)" == 0 ]] || { log "error: installing ${packages[*]} needs root"; exit 1; }
    command -v apt-get >/dev/null 2>&1 \
        || { log "error: ${packages[*]} missing and apt-get is not available"; exit 1; }
    log "installing ${packages[*]}"
    start=$SECONDS
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y --no-install-recommends "${packages[@]}" >/dev/null 2>&1 || {
        apt-get update >/dev/null
        apt-get install -y --no-install-recommends "${packages[@]}" >/dev/null
    }
    log "installed in $((SECONDS - start))s"
else
    log "packages present"
fi

intercom-envtest/build-control-plane.sh
