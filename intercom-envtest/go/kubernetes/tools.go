//go:build tools

// Package tools keeps the control-plane main packages in the module graph so that
// `go mod tidy` records every dependency they need. It is never compiled.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
)
