//! [`Env`]: a control plane plus a kubelet, the whole cluster a test needs.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use intercom_envtest::Env;
//! use k8s_openapi::api::core::v1::Pod;
//! use kube::Api;
//!
//! // In an integration test, the executable is a `[[bin]]` of the crate:
//! // `env!("CARGO_BIN_EXE_greeter")`.
//! let env = Env::builder()
//!     .image("registry.example/greeter:1", "/path/to/greeter")
//!     .start()
//!     .await?;
//! let pods: Api<Pod> = Api::default_namespaced(env.client());
//! // create a Deployment whose pods use image `registry.example/greeter:1` …
//! # Ok(()) }
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::control_plane::{ControlPlane, ControlPlaneError};
use crate::kubelet::{Kubelet, KubeletConfig, KubeletError, PodCidr};
#[cfg(target_os = "linux")]
use crate::real_node::{RealNode, RealNodeConfig, RealNodeError};
use crate::service_proxy::ServiceProxy;

/// The variable choosing the node kind: `real` or `process` (see [`NodeKind::from_env`]).
pub const NODE_ENV: &str = "INTERCOM_ENVTEST_NODE";

/// Which node runs an [`Env`]'s pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum NodeKind {
    /// The process [`Kubelet`]: containers are local processes (no privileges needed).
    #[default]
    Process,
    /// A [`RealNode`]: containerd, runc, CNI, kubelet, kube-proxy and CoreDNS (root, inside
    /// the namespaces of `real-node-ns.sh`).
    #[cfg(target_os = "linux")]
    Real,
}

impl NodeKind {
    /// The kind named by `INTERCOM_ENVTEST_NODE` (`real` or `process`; unset: process).
    ///
    /// # Errors
    /// [`EnvError::NodeKind`] for any other value.
    pub fn from_env() -> Result<NodeKind, EnvError> {
        match std::env::var(NODE_ENV).as_deref().map(str::trim) {
            Err(_) | Ok("" | "process") => Ok(NodeKind::Process),
            #[cfg(target_os = "linux")]
            Ok("real") => Ok(NodeKind::Real),
            Ok(other) => Err(EnvError::NodeKind {
                value: other.to_owned(),
            }),
        }
    }
}

/// Why an [`Env`] could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnvError {
    /// The control plane failed to start.
    #[error("failed to start the control plane")]
    ControlPlane(#[from] ControlPlaneError),
    /// The kubelet failed to start.
    #[error("failed to start the kubelet")]
    Kubelet(#[from] KubeletError),
    /// The real node failed to start.
    #[cfg(target_os = "linux")]
    #[error("failed to start the real node")]
    RealNode(#[from] RealNodeError),
    /// `INTERCOM_ENVTEST_NODE` names no node kind.
    #[error("INTERCOM_ENVTEST_NODE={value:?} is not a node kind: use `process` or `real`")]
    NodeKind {
        /// The value found.
        value: String,
    },
    /// `INTERCOM_ENVTEST_POD_CIDR` is not an IPv4 CIDR.
    #[error("INTERCOM_ENVTEST_POD_CIDR={value:?} is not an IPv4 range like 10.213.0.0/16")]
    PodCidr {
        /// The value found.
        value: String,
    },
    /// `INTERCOM_ENVTEST_SERVICE_CIDR` is not an IPv4 CIDR of at most /24.
    #[error(
        "INTERCOM_ENVTEST_SERVICE_CIDR={value:?} is not an IPv4 range of at most /24 like 10.214.0.0/16"
    )]
    ServiceCidr {
        /// The value found.
        value: String,
    },
    /// The Service range is not routed to this host, so its ClusterIPs cannot be served.
    #[error(
        "the Service range {cidr} is not routed to this host ({probe} cannot be bound); route it, e.g. `ip route add local {cidr} dev lo` in a private network namespace as scripts/test.sh does"
    )]
    ServiceCidrNotLocal {
        /// The range.
        cidr: PodCidr,
        /// The address tried.
        probe: std::net::Ipv4Addr,
        /// Why binding failed.
        #[source]
        source: std::io::Error,
    },
}

/// A running test cluster: etcd, kube-apiserver, kube-controller-manager and one node,
/// either the process [`Kubelet`] (which also schedules) or a [`RealNode`].
///
/// Dropping it stops the pods first, then the control plane.
#[derive(Debug)]
pub struct Env {
    // Field order is drop order: the node goes before the apiserver it talks to.
    service_proxy: Option<ServiceProxy>,
    node: EnvNode,
    control_plane: ControlPlane,
}

#[derive(Debug)]
enum EnvNode {
    Process(Kubelet),
    #[cfg(target_os = "linux")]
    Real(RealNode),
}

/// Builder of an [`Env`]: the image map and kubelet knobs.
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct EnvBuilder {
    node: Option<NodeKind>,
    kubelet: KubeletConfig,
    service_network: Option<PodCidr>,
    hosts_file: Option<PathBuf>,
}

impl EnvBuilder {
    /// Maps an image reference to the local executable its containers run.
    pub fn image(mut self, reference: impl Into<String>, executable: impl Into<PathBuf>) -> Self {
        self.kubelet = self.kubelet.image(reference, executable);
        self
    }

    /// First restart / image-pull back-off (kubelet: 10 s); tests use e.g. 200 ms.
    pub fn backoff_base(mut self, base: Duration) -> Self {
        self.kubelet = self.kubelet.backoff_base(base);
        self
    }

    /// Draws pod IPs from `cidr` (routed to this host) instead of loopback addresses, so
    /// that EndpointSlices accept them; see [`KubeletConfig::pod_cidr`].
    pub fn pod_cidr(mut self, cidr: PodCidr) -> Self {
        self.kubelet = self.kubelet.pod_cidr(cidr);
        self
    }

    /// Serves Service ClusterIPs, like kube-proxy, from a random `/24` of `network` (a
    /// range routed to this host): the apiserver allocates ClusterIPs there and a
    /// [`ServiceProxy`] forwards them to ready endpoints. Without it (and without
    /// `INTERCOM_ENVTEST_SERVICE_CIDR`), ClusterIPs are allocated but reach nothing.
    pub fn service_network(mut self, network: PodCidr) -> Self {
        self.service_network = Some(network);
        self
    }

    /// Publishes `<service>.<namespace>.svc[.cluster.local]` for each ClusterIP in `path`,
    /// a hosts file the resolver reads (a private `/etc/hosts` bind-mounted in a mount
    /// namespace, as `scripts/test.sh` does). Needs a [`service_network`](Self::service_network).
    pub fn hosts_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.hosts_file = Some(path.into());
        self
    }

    /// The node kind (default: [`NodeKind::from_env`]). A [`RealNode`] takes the
    /// [`image`](Self::image) map and the pod range; the other kubelet knobs are the
    /// process kubelet's.
    pub fn node(mut self, kind: NodeKind) -> Self {
        self.node = Some(kind);
        self
    }

    /// Replaces the whole kubelet configuration (images included).
    pub fn kubelet_config(mut self, config: KubeletConfig) -> Self {
        self.kubelet = config;
        self
    }

    /// Starts the control plane, then the kubelet.
    ///
    /// Without an explicit [`pod_cidr`](Self::pod_cidr), the range in
    /// `INTERCOM_ENVTEST_POD_CIDR` is used when set (the project's `scripts/test.sh` sets
    /// it, inside a private network namespace where that range is routed to `lo`); the
    /// same holds for [`service_network`](Self::service_network)
    /// (`INTERCOM_ENVTEST_SERVICE_CIDR`) and [`hosts_file`](Self::hosts_file)
    /// (`INTERCOM_ENVTEST_HOSTS_FILE`).
    ///
    /// # Errors
    /// [`EnvError::ControlPlane`] or [`EnvError::Kubelet`].
    ///
    /// # Cancel safety
    /// Cancel safe: whatever started is stopped when the future is dropped.
    pub async fn start(mut self) -> Result<Env, EnvError> {
        let kind = match self.node {
            Some(kind) => kind,
            None => NodeKind::from_env()?,
        };
        if self.kubelet.pod_cidr.is_none()
            && let Some(cidr) = pod_cidr_from_env()?
        {
            self.kubelet = self.kubelet.pod_cidr(cidr);
        }
        if self.service_network.is_none() {
            self.service_network =
                cidr_from_env(SERVICE_CIDR_ENV).map_err(|value| EnvError::ServiceCidr { value })?;
        }
        if self.hosts_file.is_none() {
            self.hosts_file = std::env::var_os(HOSTS_FILE_ENV)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from);
        }
        let mut control_plane = ControlPlane::builder();
        #[cfg(target_os = "linux")]
        if kind == NodeKind::Real {
            // Before anything starts: a real node outside its namespaces fails at once.
            crate::real_node::preflight()?;
            // Pods reach the apiserver at the node IP, through the `kubernetes` Service.
            control_plane = control_plane
                .node_lifecycle(true)
                .advertise_address(crate::real_node::node_ip_from_env()?);
        }
        let service_cidr = match self.service_network {
            Some(network) => {
                let cidr = random_block(network).ok_or_else(|| EnvError::ServiceCidr {
                    value: network.to_string(),
                })?;
                let probe = std::net::Ipv4Addr::from(*cidr.hosts().start());
                // A real node's kube-proxy serves the range; the process node's
                // ServiceProxy binds its addresses.
                if kind == NodeKind::Process {
                    std::net::TcpListener::bind((probe, 0)).map_err(|source| {
                        EnvError::ServiceCidrNotLocal {
                            cidr: network,
                            probe,
                            source,
                        }
                    })?;
                }
                control_plane = control_plane.service_cidr(cidr);
                Some(cidr)
            }
            None => None,
        };
        let control_plane = control_plane.start().await?;
        let node = match kind {
            NodeKind::Process => EnvNode::Process(
                Kubelet::start(control_plane.client(), control_plane.pki(), self.kubelet).await?,
            ),
            #[cfg(target_os = "linux")]
            NodeKind::Real => {
                let config = RealNodeConfig {
                    images: self.kubelet.images,
                    pod_cidr: self.kubelet.pod_cidr,
                };
                EnvNode::Real(RealNode::start(&control_plane, config).await?)
            }
        };
        let service_proxy = match node {
            EnvNode::Process(_) => service_cidr
                .map(|_| ServiceProxy::start(control_plane.client(), self.hosts_file.as_deref())),
            #[cfg(target_os = "linux")]
            EnvNode::Real(_) => None,
        };
        Ok(Env {
            service_proxy,
            node,
            control_plane,
        })
    }
}

/// A random `/24` inside `network` (`network` itself when it is a `/24`); `None` when
/// `network` is smaller than a `/24`.
fn random_block(network: PodCidr) -> Option<PodCidr> {
    let len = network.prefix_len();
    if len > 24 {
        return None;
    }
    let blocks = 1u64 << (24 - len);
    let index = u32::try_from(crate::kubelet::random_u64() % blocks).ok()?;
    PodCidr::new(
        std::net::Ipv4Addr::from_bits(network.network().to_bits() + (index << 8)),
        24,
    )
}

/// The variable naming a range routed to this host for Service ClusterIPs (see
/// [`EnvBuilder::service_network`]).
pub const SERVICE_CIDR_ENV: &str = "INTERCOM_ENVTEST_SERVICE_CIDR";

/// The variable naming the hosts file for Service names (see [`EnvBuilder::hosts_file`]).
pub const HOSTS_FILE_ENV: &str = "INTERCOM_ENVTEST_HOSTS_FILE";

/// The range in `var`, if set; `Err` carries a value that is not an IPv4 CIDR.
fn cidr_from_env(var: &str) -> Result<Option<PodCidr>, String> {
    match std::env::var(var) {
        Ok(v) if !v.trim().is_empty() => v.trim().parse().map(Some).map_err(|_| v),
        _ => Ok(None),
    }
}

/// The variable naming a pod IP range routed to this host (see [`EnvBuilder::start`]).
pub const POD_CIDR_ENV: &str = "INTERCOM_ENVTEST_POD_CIDR";

/// The pod range from [`POD_CIDR_ENV`], if set.
///
/// # Errors
/// [`EnvError::PodCidr`] when the value is not an IPv4 CIDR.
pub fn pod_cidr_from_env() -> Result<Option<PodCidr>, EnvError> {
    cidr_from_env(POD_CIDR_ENV).map_err(|value| EnvError::PodCidr { value })
}

impl Env {
    /// A builder (images, back-off).
    pub fn builder() -> EnvBuilder {
        EnvBuilder::default()
    }

    /// An environment with an empty image map.
    ///
    /// # Errors
    /// See [`EnvBuilder::start`].
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn start() -> Result<Env, EnvError> {
        Self::builder().start().await
    }

    /// An admin (`system:masters`) client.
    ///
    /// # Panics
    /// Outside a Tokio runtime (see [`ControlPlane::client`]).
    pub fn client(&self) -> kube::Client {
        self.control_plane.client()
    }

    /// The admin kubeconfig file.
    pub fn kubeconfig(&self) -> &Path {
        self.control_plane.kubeconfig()
    }

    /// The control plane.
    pub fn control_plane(&self) -> &ControlPlane {
        &self.control_plane
    }

    /// The process kubelet, when the node is one.
    pub fn kubelet(&self) -> Option<&Kubelet> {
        match &self.node {
            EnvNode::Process(kubelet) => Some(kubelet),
            #[cfg(target_os = "linux")]
            EnvNode::Real(_) => None,
        }
    }

    /// The real node, when the node is one.
    #[cfg(target_os = "linux")]
    pub fn real_node(&self) -> Option<&RealNode> {
        match &self.node {
            EnvNode::Real(node) => Some(node),
            EnvNode::Process(_) => None,
        }
    }

    /// Which node runs the pods.
    pub fn node_kind(&self) -> NodeKind {
        match &self.node {
            EnvNode::Process(_) => NodeKind::Process,
            #[cfg(target_os = "linux")]
            EnvNode::Real(_) => NodeKind::Real,
        }
    }

    /// The Service proxy, when a [service network](EnvBuilder::service_network) is set.
    pub fn service_proxy(&self) -> Option<&ServiceProxy> {
        self.service_proxy.as_ref()
    }

    /// Stops everything: the pods' processes are killed and reaped
    /// ([`Kubelet::shutdown`]), then the control plane stops. Dropping the `Env` does the
    /// same without waiting for the processes to be reaped.
    ///
    /// # Cancel safety
    /// Dropping the future falls back to [`Drop`].
    pub async fn shutdown(self) {
        let Env {
            service_proxy,
            node,
            control_plane,
        } = self;
        drop(service_proxy);
        match node {
            EnvNode::Process(kubelet) => kubelet.shutdown().await,
            #[cfg(target_os = "linux")]
            EnvNode::Real(node) => drop(node),
        }
        drop(control_plane);
    }
}
