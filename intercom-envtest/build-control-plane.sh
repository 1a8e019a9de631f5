#!/usr/bin/env bash
# Builds the real Kubernetes binaries used by intercom-envtest from the Go module proxy,
# into a cache directory keyed by version: the control plane (etcd, kube-apiserver,
# kube-controller-manager) and the real node's components (kubelet, kube-scheduler,
# kube-proxy, and CoreDNS for cluster DNS):
#
#   ${INTERCOM_ENVTEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/intercom-envtest}/k8s-<k8s>-etcd-<etcd>/bin/
#
# Usage: intercom-envtest/build-control-plane.sh [--print-dir]
#   --print-dir  print the bin directory for the pinned versions and exit (no build)
#
# Idempotent: when all binaries exist and the stamp file records the same versions
# and wrapper-module hashes, nothing is built. Otherwise it builds into a temporary
# directory beside the cache entry and renames it into place. Progress goes to stderr;
# the last line on stdout is always the bin directory.
#
# Versions live in go/versions.env. The wrapper modules (go/kubernetes, go/etcd,
# go/coredns) have committed go.mod/go.sum files, so builds are reproducible; they are
# separate modules because etcd 3.6, Kubernetes 1.35 and CoreDNS need different versions
# of grpc, otel and client-go.
# A cold build takes many minutes (kube-apiserver is a large program): run it in the
# background on small machines.
set -euo pipefail

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
go_dir="$script_dir/go"

# shellcheck source=go/versions.env
source "$go_dir/versions.env"
: "${KUBERNETES_VERSION:?missing in go/versions.env}" "${ETCD_VERSION:?missing in go/versions.env}"
: "${COREDNS_VERSION:?missing in go/versions.env}"

cache_root="${INTERCOM_ENVTEST_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/intercom-envtest}"
entry="$cache_root/k8s-${KUBERNETES_VERSION}-etcd-${ETCD_VERSION}"
bin_dir="$entry/bin"
binaries=(etcd kube-apiserver kube-controller-manager kubelet kube-scheduler kube-proxy coredns)

log() { printf 'build-control-plane: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

case "${1:-}" in
  "") ;;
  --print-dir) echo "$bin_dir"; exit 0 ;;
  -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2; exit 0 ;;
  *) die "unknown argument '$1' (usage: $0 [--print-dir])" ;;
esac

# The wrappers must pin the same versions as versions.env.
grep -q "^require k8s.io/kubernetes ${KUBERNETES_VERSION}\$" "$go_dir/kubernetes/go.mod" \
  || die "go/kubernetes/go.mod does not require k8s.io/kubernetes ${KUBERNETES_VERSION} (see go/versions.env)"
grep -q "^require go.etcd.io/etcd/server/v3 ${ETCD_VERSION}\$" "$go_dir/etcd/go.mod" \
  || die "go/etcd/go.mod does not require go.etcd.io/etcd/server/v3 ${ETCD_VERSION} (see go/versions.env)"
grep -q "^require github.com/coredns/coredns ${COREDNS_VERSION}\$" "$go_dir/coredns/go.mod" \
  || die "go/coredns/go.mod does not require github.com/coredns/coredns ${COREDNS_VERSION} (see go/versions.env)"

sha() { sha256sum "$@" | cut -d' ' -f1 | tr '\n' ' '; }
stamp="kubernetes=${KUBERNETES_VERSION}
etcd=${ETCD_VERSION}
kubernetes-wrapper=$(sha "$go_dir/kubernetes/go.mod" "$go_dir/kubernetes/go.sum")
etcd-wrapper=$(sha "$go_dir/etcd/go.mod" "$go_dir/etcd/go.sum")
coredns=${COREDNS_VERSION}
coredns-wrapper=$(sha "$go_dir/coredns/go.mod" "$go_dir/coredns/go.sum")"

up_to_date() {
  local b
  for b in "${binaries[@]}"; do [[ -x "$bin_dir/$b" ]] || return 1; done
  [[ -f "$entry/stamp" && "$(cat "$entry/stamp")" == "$stamp" ]]
}

if up_to_date; then
  log "up to date: $bin_dir"
  echo "$bin_dir"
  exit 0
fi

command -v go >/dev/null 2>&1 \
  || die "the 'go' command was not found on PATH; install Go 1.26 or later (https://go.dev/doc/install) and re-run $0"

mkdir -p "$cache_root"
# Serialize concurrent runs for the same cache (flock is optional).
if command -v flock >/dev/null 2>&1; then
  exec 9>"$entry.lock"
  flock 9
  if up_to_date; then
    log "up to date (built by a concurrent run): $bin_dir"
    echo "$bin_dir"
    exit 0
  fi
fi

tmp="$(mktemp -d "$cache_root/.build-k8s-${KUBERNETES_VERSION}-etcd-${ETCD_VERSION}.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/bin"

export CGO_ENABLED=0 GOWORK=off GOFLAGS=-mod=readonly
common=(-trimpath -buildvcs=false)
k8s_minor="${KUBERNETES_VERSION#v}"; k8s_major="${k8s_minor%%.*}"; k8s_minor="${k8s_minor#*.}"; k8s_minor="${k8s_minor%%.*}"
k8s_ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  k8s_ldflags+=" -X $pkg.gitVersion=${KUBERNETES_VERSION} -X $pkg.gitMajor=${k8s_major}"
  k8s_ldflags+=" -X $pkg.gitMinor=${k8s_minor} -X $pkg.gitTreeState=clean"
done

log "$(go version); building into $tmp (cold builds take many minutes)"
build() { # <wrapper dir> <output name> <package> <ldflags>
  local start=$SECONDS
  log "building $2 ($3)"
  (cd "$go_dir/$1" && go build "${common[@]}" -ldflags "$4" -o "$tmp/bin/$2" "$3") \
    || die "building $2 failed"
  log "built $2 in $((SECONDS - start))s ($(du -h "$tmp/bin/$2" | cut -f1))"
}
build etcd etcd go.etcd.io/etcd/server/v3 "-s -w"
build kubernetes kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver "$k8s_ldflags"
build kubernetes kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager "$k8s_ldflags"
build kubernetes kubelet k8s.io/kubernetes/cmd/kubelet "$k8s_ldflags"
build kubernetes kube-scheduler k8s.io/kubernetes/cmd/kube-scheduler "$k8s_ldflags"
build kubernetes kube-proxy k8s.io/kubernetes/cmd/kube-proxy "$k8s_ldflags"
build coredns coredns github.com/coredns/coredns "-s -w"
printf '%s\n' "$stamp" >"$tmp/stamp"

# Swap the finished build into place.
if [[ -e "$entry" ]]; then
  old="$tmp.old"
  mv "$entry" "$old"
  mv "$tmp" "$entry"
  rm -rf "$old"
else
  mv "$tmp" "$entry"
fi
trap - EXIT
log "done: $bin_dir"
echo "$bin_dir"
