//! The Kubernetes runtime: the plugin runs as a Deployment + Service.
//!
//! Same [`Client`](crate::Client) API as the process runtime. The host creates the
//! objects (or reattaches to existing ones), waits for a ready pod by watching, reads the
//! handshake line from the pod's log, and connects with a [`ConnectMode`]. The broker is
//! always multiplexed over the one host→pod connection (the plugin cannot dial the host),
//! AutoMTLS is on by default, and each replica is its own connection, balanced per call.
//!
//! Pods are trusted by owner, not by label: only pods controlled by a ReplicaSet that the
//! plugin's Deployment controls (UID for UID) have their handshake read, their certificate
//! pinned, a connection, calls and their log forwarded. A pod that merely carries the
//! plugin's labels is ignored (the host watches ReplicaSets for this; see
//! `deploy/rbac.yaml`).
//!
//! **When the host dies without `kill`.** A host running in a pod of the plugin's
//! namespace owns its plugins' Deployments, and the garbage collector removes them with
//! the pod. Every host also keeps a Lease per launched plugin, renewed every third of
//! [`KubernetesConfig::host_lease`] (default 30 s), and reads the namespace's Leases
//! while it runs: a plugin whose Lease has gone unrenewed longer than its duration (its
//! host was SIGKILLed, its machine lost) has its Deployment deleted by any live intercom
//! host with plugins in the namespace. A namespace where no intercom host runs any more
//! keeps such plugins until one does (or [`discover`] finds them and a reattach with
//! [`delete_on_kill`](KubernetesConfig::delete_on_kill) removes them). Reattachable
//! plugins get no Lease: they are meant to outlive their host.
//!
//! ```no_run
//! # async fn f(kube: intercom::kube::Client, plugins: intercom::PluginSet) -> Result<(), intercom::ClientError> {
//! use intercom::runtime::kubernetes::{KubernetesConfig, PluginWorkload};
//! use intercom::{Client, ClientConfig, HandshakeConfig};
//! const HANDSHAKE: HandshakeConfig = HandshakeConfig::new(1, "GREETER_PLUGIN", "hello");
//!
//! let (deployment, service) = PluginWorkload::new("registry.example/greeter:1").replicas(2).build("greeter");
//! let client = Client::new(
//!     ClientConfig::new(
//!         HANDSHAKE,
//!         plugins,
//!         KubernetesConfig::new(kube, "plugins").objects(deployment, service),
//!     ),
//! );
//! let protocol = client.connect().await?; // created, ready, handshaken, connected
//! client.kill().await;                   // Deployment + Service deleted, graceful shutdown, pods gone
//! # Ok(()) }
//! ```

mod balancer;
mod config;
mod connect_mode;
mod discover;
mod error;
mod handshake_scan;
mod host_owner;
mod lease;
mod log_lines;
mod low_latency_client;
pub mod objects;
mod owners;
mod pods;
mod retry;
pub mod validate;

use std::time::Duration;

pub use config::KubernetesConfig;
pub use connect_mode::ConnectMode;
pub use discover::{DiscoveredPlugin, discover};
pub use error::KubeError;
pub use low_latency_client::low_latency_client;
pub use objects::PluginWorkload;
pub(crate) use pods::{launch, reattach};
pub use retry::{DEFAULT_RETRY, Retry, is_retryable_kube_api_error};
pub use validate::{ValidationError, ValidationErrorKind, validate_deployment, validate_service};

/// Bundles what a launch needs from the Client.
pub(crate) fn pods_context(
    name: String,
    env: Vec<(String, String)>,
    identity: Option<crate::tls::Identity>,
    host_versions: Vec<u32>,
    timeout: Duration,
    sync_stdout: Option<crate::connection::Writer>,
    sync_stderr: Option<crate::connection::Writer>,
) -> pods::LaunchContext {
    pods::LaunchContext {
        name,
        env,
        identity,
        host_versions,
        deadline: tokio::time::Instant::now() + timeout,
        sync_stdout,
        sync_stderr,
    }
}

#[cfg(test)]
mod tests;
