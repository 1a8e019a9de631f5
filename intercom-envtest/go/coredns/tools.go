//go:build tools

// Package tools keeps CoreDNS's main package in the module graph so that `go mod tidy`
// records every dependency it needs. It is never compiled.
package tools

import _ "github.com/coredns/coredns"
