//go:build tools

// Package tools keeps the Kubernetes main packages intercom-envtest builds in the module
// graph so that `go mod tidy` records every dependency they need. It is never compiled.
// The control plane: kube-apiserver and kube-controller-manager; the real node:
// kubelet, kube-scheduler and kube-proxy.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
