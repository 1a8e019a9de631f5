//! A real Kubernetes control plane for tests: etcd, kube-apiserver and
//! kube-controller-manager built from the Go module proxy, plus a small kubelet that runs
//! pod containers as local processes.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(
    missing_docs,
    missing_debug_implementations,
    rust_2018_idioms,
    unreachable_pub
)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod binaries;
pub mod control_plane;
#[cfg(unix)]
pub mod env;
pub mod kubelet;
#[cfg(target_os = "linux")]
pub mod real_node;
pub mod service_proxy;
#[cfg(unix)]
pub use env::{Env, EnvBuilder, EnvError, NodeKind};
#[cfg(unix)]
pub use kubelet::{Kubelet, KubeletConfig, KubeletError, PodCidr};
