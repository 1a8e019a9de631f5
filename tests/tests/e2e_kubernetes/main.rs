//! The Kubernetes runtime end to end, against a real control plane (intercom-envtest:
//! etcd, kube-apiserver, kube-controller-manager, and a kubelet that runs pods as local
//! processes). Each test works in its own namespace and asserts that nothing is left.
//!
//! With `INTERCOM_E2E_KUBECONFIG` set, the same tests run against that cluster instead
//! (`tests/e2e-kind/run.sh` makes one with kind and loads the images).
//!
//! One test binary, so one control plane (`intercom_tests::kubernetes::env`), with its
//! tests in files by behaviour:
//! - [`lifecycle`]: start, call, kill and clean up; callbacks; pod failures; a kill that
//!   restarts nothing; the host pod's deletion; discover and reattach;
//! - [`replicas`]: several replicas, and pods replaced under a running host;
//! - [`connect_modes`]: `ServiceDns` through the Service, a dropped `PortForward`;
//! - [`rbac`]: the shipped least-privilege RBAC;
//! - [`logs`]: the plugin's logs as the host's `tracing` events;
//! - [`config`]: image digest pinning, an external cluster's kubeconfig.

mod config;
mod connect_modes;
mod lifecycle;
mod logs;
mod rbac;
mod replicas;
