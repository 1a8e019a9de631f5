#!/usr/bin/env bash
# Runs a command inside private namespaces where intercom-envtest's real node
# (containerd + runc + CNI + kubelet + kube-proxy + CoreDNS) may run without touching the
# machine: its interfaces, routes, iptables rules, sysctls and the fixed paths a kubelet
# writes all belong to these namespaces.
#
# Usage: intercom-envtest/real-node-ns.sh <command> [args...]   (as root)
#
# What the command finds inside:
# - a network namespace of its own: `lo` up, a veth pair with both ends inside
#   (`intercom-node` = $INTERCOM_ENVTEST_NODE_IP, the node's InternalIP) and a default route
#   that leads nowhere (kubelet and kube-proxy want one); pod and Service ranges exist only
#   here;
# - a PID namespace whose init is this script's child: when the command ends or the run is
#   killed, the kernel kills everything started inside (containerd shims and containers
#   included), so a crashed test run leaves nothing running;
# - a private mount namespace with tmpfs over /var/lib, /var/log and /run (kubelet's and
#   CNI's fixed paths) and over /tmp, a private /etc/hosts and /etc/resolv.conf (cluster DNS on the node
#   IP), and plain files bind-mounted over the global sysctls kubelet writes
#   (vm/overcommit_memory, kernel/panic, kernel/panic_on_oops), so its writes land there.
#
# `INTERCOM_ENVTEST_NODE=real` is exported, which makes intercom-envtest's `Env` start a
# real node; intercom-envtest refuses to start one outside such a namespace.
set -euo pipefail

node_ip="${INTERCOM_ENVTEST_NODE_IP:-10.215.0.2}"
gateway="${node_ip%.*}.1"

if [[ "${1:-}" != "--inside" ]]; then
    [[ $# -gt 0 ]] || { echo "usage: $0 <command> [args...]" >&2; exit 2; }
    [[ "$(id -u)" == 0 ]] || { echo "real-node-ns.sh: the real node needs root" >&2; exit 1; }
    for tool in unshare nsenter ip mount containerd runc ctr iptables; do
        command -v "$tool" >/dev/null 2>&1 || {
            echo "real-node-ns.sh: '$tool' is missing; run scripts/setup-real-node.sh" >&2
            exit 1
        }
    done
    # cgroup v1 is machine-wide: one real-node namespace at a time on this machine.
    cache="${INTERCOM_ENVTEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/intercom-envtest}"
    mkdir -p "$cache"
    exec 8>"$cache/real-node.lock"
    if command -v flock >/dev/null 2>&1 && ! flock -n 8; then
        echo "real-node-ns.sh: another real node runs on this machine; waiting for it" >&2
        flock 8
    fi
    status=0
    unshare --net --mount --pid --fork --kill-child --mount-proc -- "$0" --inside "$@" || status=$?
    # Everything inside is dead now; cgroup v1 is machine-wide, so the pods' cgroups a
    # node that was never dropped left behind are removed here (leaves first).
    for hierarchy in /sys/fs/cgroup/*/; do
        [[ -d "$hierarchy/kubepods" ]] || continue
        find "$hierarchy/kubepods" -depth -type d -exec rmdir {} + 2>/dev/null || true
    done
    exit "$status"
fi
shift

mount --make-rprivate /
ip link set lo up
ip link add intercom-node type veth peer name intercom-gw
ip addr add "$node_ip/24" dev intercom-node
ip link set intercom-node up
ip link set intercom-gw up
ip route add default via "$gateway" dev intercom-node

for dir in /var/lib /var/log /run; do
    mount -t tmpfs -o mode=755 tmpfs "$dir"
done
# Temporary directories (control planes that outlive their test binary's tests) go
# with the namespace too.
mount -t tmpfs -o mode=1777 tmpfs /tmp
mkdir -p /var/lib/cni /var/log/containers /var/log/pods /run/netns /run/intercom-real-node
# The private files live on the namespace's own /run: nothing is left behind.
private=/run/intercom-real-node
cp /etc/hosts "$private/hosts"
printf 'nameserver %s\nsearch svc.cluster.local cluster.local\noptions ndots:5 timeout:1 attempts:1\n' \
    "$node_ip" >"$private/resolv.conf"
mount --bind "$private/hosts" /etc/hosts
mount --bind "$private/resolv.conf" /etc/resolv.conf
for sysctl in vm/overcommit_memory kernel/panic kernel/panic_on_oops; do
    file="$private/sysctl-${sysctl//\//-}"
    cat "/proc/sys/$sysctl" >"$file"
    mount --bind "$file" "/proc/sys/$sysctl"
done

export INTERCOM_ENVTEST_NODE=real INTERCOM_ENVTEST_NODE_IP="$node_ip"
export INTERCOM_ENVTEST_HOSTS_FILE=/etc/hosts
exec "$@"
