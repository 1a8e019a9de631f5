//! [`ConnectMode`]: how the host reaches the plugin's pods.

/// How the host reaches the plugin's pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectMode {
    /// Watch the Service's EndpointSlices and dial ready pod IPs directly, balancing calls
    /// over all replicas (default when the host runs in the cluster).
    Endpoints,
    /// Dial `<service>.<namespace>.svc:<port>` (for meshes): one connection through the
    /// Service name, re-dialled when it drops, so the Service (kube-proxy or the mesh) picks
    /// the replica that answers. The host reads every replica's handshake and, with
    /// AutoMTLS, accepts the certificate of any of them, since it cannot know which one the
    /// Service chose. Every replica's log is forwarded.
    ServiceDns,
    /// Through the apiserver's port-forward, one forwarded connection per pod,
    /// re-established if it drops (default outside the cluster).
    ///
    /// Every call crosses the apiserver. Build the `kube::Client` with
    /// [`low_latency_client`](super::low_latency_client): kube's default client leaves Nagle's algorithm on, and the
    /// apiserver's delayed ACKs then add ~40 ms to each call.
    PortForward,
}

impl ConnectMode {
    /// `Endpoints` inside a cluster (`KUBERNETES_SERVICE_HOST` is set), else `PortForward`.
    pub fn for_environment() -> Self {
        if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() {
            Self::Endpoints
        } else {
            Self::PortForward
        }
    }
}
