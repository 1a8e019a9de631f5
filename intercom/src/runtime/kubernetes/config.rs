//! [`KubernetesConfig`]: where and what to run on Kubernetes, and its builder.

use std::fmt;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;

use super::{ConnectMode, DEFAULT_RETRY, PluginWorkload, Retry, handshake_scan, lease};

/// Where and what to run on Kubernetes.
#[derive(Clone)]
#[non_exhaustive]
pub struct KubernetesConfig {
    /// The client (its credentials need `deploy/rbac.yaml`'s permissions).
    pub client: kube::Client,
    /// The namespace.
    pub namespace: String,
    /// The plugin's Deployment (see [`PluginWorkload`] to build one).
    pub deployment: Option<Deployment>,
    /// The plugin's Service.
    pub service: Option<Service>,
    /// How to reach the pods (default [`ConnectMode::for_environment`]).
    pub connect: ConnectMode,
    /// Value of the `intercom.dev/host` label (default: the host pod's name, or the
    /// hostname).
    pub host_id: Option<String>,
    /// Refuse image references without a `@sha256:` digest, and pods whose image digest
    /// differs (the counterpart of [`SecureConfig`](crate::runtime::SecureConfig)).
    pub require_image_digest: bool,
    /// Also create a NetworkPolicy that admits only the host's pods to the plugin port.
    pub network_policy: bool,
    /// Keep the host's AutoMTLS identity (certificate and private key) in a Secret owned by
    /// the plugin's Deployment, so another host can [`reattach`](Self::reattach) to it
    /// (default `false`: the private key never leaves the host process).
    pub reattachable: bool,
    /// Reattach to this existing Deployment instead of creating one.
    pub reattach: Option<String>,
    /// With `reattach`: whether `kill` deletes the Deployment (default: only disconnect).
    pub delete_on_kill: bool,
    /// Retry policy for creates.
    pub retry: Retry,
    /// How long a started plugin container has to print its handshake line (default
    /// 30 s). Log lines it prints first (hclog JSON, plain text on stderr) are forwarded
    /// as logs.
    pub handshake_timeout: Duration,
    /// How long the host's Lease of a launched plugin lasts without renewal (default
    /// 30 s, at least 1 s). The host renews it every third of that; when the host dies
    /// without `kill`, any other live intercom host with plugins in the namespace deletes
    /// the plugin's Deployment once the Lease has gone unrenewed that long. Reattachable
    /// plugins get no Lease (they are meant to outlive their host).
    pub host_lease: Duration,
    /// Owner of the plugin's Deployment, so the garbage collector removes the plugin with
    /// it. Default: the host's own pod when it runs in one (downward-API env `POD_NAME` and
    /// `POD_NAMESPACE`) and that pod is in [`namespace`](Self::namespace); a host pod in
    /// another namespace owns nothing (an ownerReference cannot cross namespaces: the
    /// garbage collector would delete the plugin at once), so its plugins are deleted by
    /// `kill`, or found with [`discover`](super::discover) and removed by a reattach with
    /// [`delete_on_kill`](Self::delete_on_kill). An owner given here must be in
    /// `namespace` too.
    pub owner: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference>,
}

impl fmt::Debug for KubernetesConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KubernetesConfig")
            .field("namespace", &self.namespace)
            .field(
                "deployment",
                &self
                    .deployment
                    .as_ref()
                    .and_then(|d| d.metadata.name.clone()),
            )
            .field("connect", &self.connect)
            .field("reattach", &self.reattach)
            .finish_non_exhaustive()
    }
}

impl KubernetesConfig {
    /// A config for `namespace`; add the objects with [`objects`](Self::objects).
    pub fn new(client: kube::Client, namespace: impl Into<String>) -> Self {
        Self {
            client,
            namespace: namespace.into(),
            deployment: None,
            service: None,
            connect: ConnectMode::for_environment(),
            host_id: None,
            require_image_digest: false,
            network_policy: false,
            reattachable: false,
            reattach: None,
            delete_on_kill: false,
            retry: DEFAULT_RETRY,
            handshake_timeout: handshake_scan::DEFAULT_HANDSHAKE_TIMEOUT,
            host_lease: lease::DEFAULT_HOST_LEASE,
            owner: None,
        }
    }

    /// Makes `owner` (e.g. the host's pod) own the plugin's Deployment. It must live in the
    /// plugin namespace: an ownerReference names no namespace, and the garbage collector
    /// deletes dependents whose owner it does not find there.
    #[must_use]
    pub fn owned_by(
        mut self,
        owner: k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
    ) -> Self {
        self.owner = Some(owner);
        self
    }

    /// Runs this Deployment and Service.
    #[must_use]
    pub fn objects(mut self, deployment: Deployment, service: Service) -> Self {
        self.deployment = Some(deployment);
        self.service = Some(service);
        self
    }

    /// Builds the objects from `workload`, named `name`.
    #[must_use]
    pub fn workload(self, name: &str, workload: &PluginWorkload) -> Self {
        let (d, s) = workload.build(name);
        self.objects(d, s)
    }

    /// Chooses how to reach the pods.
    #[must_use]
    pub fn connect(mut self, mode: ConnectMode) -> Self {
        self.connect = mode;
        self
    }

    /// Sets the host id label.
    #[must_use]
    pub fn host_id(mut self, id: impl Into<String>) -> Self {
        self.host_id = Some(id.into());
        self
    }

    /// Requires digest-pinned images.
    #[must_use]
    pub fn require_image_digest(mut self, on: bool) -> Self {
        self.require_image_digest = on;
        self
    }

    /// Creates a NetworkPolicy admitting only the host's pods.
    #[must_use]
    pub fn network_policy(mut self, on: bool) -> Self {
        self.network_policy = on;
        self
    }

    /// Lets other hosts reattach to the plugin this config launches: with AutoMTLS the
    /// plugin trusts only its launching host, so that host's identity is stored in a Secret
    /// (`<deployment>-intercom-host`, readable by whoever may read Secrets in the
    /// namespace). Off by default.
    #[must_use]
    pub fn reattachable(mut self, on: bool) -> Self {
        self.reattachable = on;
        self
    }

    /// The plugin's name for logs and errors: the Deployment reattached to, or the one
    /// that will be created.
    pub fn name(&self) -> Option<String> {
        self.reattach.clone().or_else(|| {
            self.deployment
                .as_ref()
                .and_then(|d| d.metadata.name.clone())
        })
    }

    /// Connects to the existing plugin Deployment `name` instead of creating one. With
    /// AutoMTLS it must have been launched [`reattachable`](Self::reattachable).
    #[must_use]
    pub fn reattach(mut self, name: impl Into<String>) -> Self {
        self.reattach = Some(name.into());
        self
    }

    /// How long a started plugin container has to print its handshake line (default
    /// 30 s); after that the start fails with [`KubeError::NoHandshake`](super::KubeError::NoHandshake).
    #[must_use]
    pub fn handshake_timeout(mut self, wait: Duration) -> Self {
        self.handshake_timeout = wait;
        self
    }

    /// How long the host's Lease of the plugin lasts without renewal (see
    /// [`host_lease`](Self#structfield.host_lease)); shorter values are raised to 1 s.
    #[must_use]
    pub fn host_lease(mut self, duration: Duration) -> Self {
        self.host_lease = duration.max(lease::MIN_HOST_LEASE);
        self
    }

    /// With [`reattach`](Self::reattach): delete the Deployment on `kill`.
    #[must_use]
    pub fn delete_on_kill(mut self, on: bool) -> Self {
        self.delete_on_kill = on;
        self
    }
}
