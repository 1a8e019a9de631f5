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
mod discover;
mod handshake_scan;
mod host_owner;
mod lease;
mod log_lines;
pub mod objects;
mod owners;
mod pods;
pub mod validate;

use std::fmt;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;

pub use discover::{DiscoveredPlugin, discover};
pub use objects::PluginWorkload;
pub(crate) use pods::{launch, reattach};

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
pub use validate::{ValidationError, ValidationErrorKind, validate_deployment, validate_service};

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
    /// [`low_latency_client`]: kube's default client leaves Nagle's algorithm on, and the
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

/// A `kube::Client` for `config` whose connections to the apiserver send small writes at
/// once (`TCP_NODELAY`), the counterpart of `kube::Client::try_from(config)`.
///
/// kube's own client leaves Nagle's algorithm on (kube-rs issue #2056); in
/// [`ConnectMode::PortForward`], where every call crosses the apiserver, that costs a delayed
/// ACK (~40 ms) per call. With this client a warm call through the port-forward takes a few
/// milliseconds. Honours the config's cluster URL, TLS, credentials and extra headers, its
/// connect timeout (per connection) and its read timeout (the longest wait for any
/// response's head; kube's default is 295 s, lower it to fail faster on a silent
/// apiserver). The write timeout and the proxy URL of `config` are not applied.
///
/// ```no_run
/// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
/// let config = intercom::kube::Config::infer().await?;
/// let kube = intercom::runtime::kubernetes::low_latency_client(config)?;
/// # Ok(()) }
/// ```
///
/// # Errors
/// The TLS or credential settings of `config` are unusable.
pub fn low_latency_client(config: kube::Config) -> Result<kube::Client, kube::Error> {
    use kube::client::ConfigExt as _;
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(config.connect_timeout);
    let https = config.rustls_https_connector_with_connector(http)?;
    let hyper_client: hyper_util::client::legacy::Client<_, kube::client::Body> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(https);
    // Every request's response head within the read timeout: an apiserver that accepts
    // but never answers is an error, not a hang (bodies — watches, logs — may stream on).
    let service = tower::ServiceBuilder::new()
        .option_layer(config.read_timeout.map(tower::timeout::TimeoutLayer::new))
        .layer(config.base_uri_layer())
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .map_err(tower::BoxError::from)
        .service(hyper_client);
    Ok(kube::Client::new(service, config.default_namespace))
}

/// Retry policy for object creation (kube's `DEFAULT_RETRY` shape).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Retry {
    /// Attempts.
    pub steps: u32,
    /// First delay.
    pub duration: Duration,
    /// Delay multiplier.
    pub factor: f64,
    /// Random extra fraction of each delay.
    pub jitter: f64,
}

impl Retry {
    /// The longest pause between two attempts, whatever the factor.
    pub const MAX_DELAY: Duration = Duration::from_secs(30);

    /// Checks the numbers before any API call: `factor` and `jitter` must be finite and
    /// not negative.
    ///
    /// # Errors
    /// [`KubeError::InvalidRetry`] naming the field.
    pub fn validate(&self) -> Result<(), KubeError> {
        for (field, value) in [("factor", self.factor), ("jitter", self.jitter)] {
            if !value.is_finite() || value < 0.0 {
                return Err(KubeError::InvalidRetry { field, value });
            }
        }
        Ok(())
    }

    /// `delay × by`, at most [`MAX_DELAY`](Self::MAX_DELAY) (and never a panic).
    pub(crate) fn scale(delay: Duration, by: f64) -> Duration {
        Duration::try_from_secs_f64(delay.as_secs_f64() * by)
            .map_or(Self::MAX_DELAY, |d| d.min(Self::MAX_DELAY))
    }
}

/// 5 steps, 10 ms, factor 1.0, jitter 0.1.
pub const DEFAULT_RETRY: Retry = Retry {
    steps: 5,
    duration: Duration::from_millis(10),
    factor: 1.0,
    jitter: 0.1,
};

/// Whether an API error is worth retrying: not NotFound, Forbidden, Invalid or
/// MethodNotSupported (nor AlreadyExists/Conflict, which retrying cannot fix).
pub fn is_retryable_kube_api_error(err: &kube::Error) -> bool {
    match err {
        kube::Error::Api(status) => !matches!(status.code, 403 | 404 | 405 | 409 | 422),
        kube::Error::HyperError(_) | kube::Error::Service(_) => true,
        _ => false,
    }
}

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
    /// `kill`, or found with [`discover`] and removed by a reattach with
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
    /// 30 s); after that the start fails with [`KubeError::NoHandshake`].
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

/// Failures of the Kubernetes runtime. Each says what happened and what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KubeError {
    /// A [`Retry`] number cannot be used.
    #[error(
        "invalid KubernetesConfig retry: {field} is {value}; use a finite number >= 0 (e.g. DEFAULT_RETRY)"
    )]
    InvalidRetry {
        /// `factor` or `jitter`.
        field: &'static str,
        /// The value given.
        value: f64,
    },
    /// Reattach with AutoMTLS to a plugin whose launching host kept its identity to itself.
    #[error(
        "cannot reattach to plugin Deployment {deployment}: it was not launched reattachable, and with AutoMTLS it trusts only the host that launched it; launch it with KubernetesConfig::reattachable(true), or use auto_mtls(false) on both hosts"
    )]
    NotReattachable {
        /// The Deployment.
        deployment: String,
    },
    /// No Deployment was configured.
    #[error("no Deployment configured: set KubernetesConfig::objects or ::workload")]
    MissingDeployment,
    /// No Service was configured.
    #[error("no Service configured: set KubernetesConfig::objects or ::workload")]
    MissingService,
    /// The objects are invalid; nothing was created.
    #[error("invalid plugin objects (nothing was created):\n  {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n  "))]
    Invalid(Vec<ValidationError>),
    /// An image reference lacks a digest while digests are required.
    #[error(
        "image {image:?} is not pinned by digest; use `name@sha256:<digest>` or turn off require_image_digest"
    )]
    ImageNotPinned {
        /// The reference.
        image: String,
    },
    /// A running pod's image is not the pinned one.
    #[error(
        "checksums did not match for pod {pod}: image {image:?} wants digest {expected}, but the pod runs {actual}"
    )]
    ChecksumsDoNotMatch {
        /// The pod.
        pod: String,
        /// The reference.
        image: String,
        /// Wanted digest.
        expected: String,
        /// The pod's `imageID`.
        actual: String,
    },
    /// An API call failed.
    #[error("failed to {step}{}", forbidden_hint(source))]
    Api {
        /// What was being done.
        step: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// A pod cannot start: image pull, crash loop, config error or scheduling.
    #[error("plugin pod {pod} cannot start: {reason}: {message}{}", log_tail(logs))]
    PodFailed {
        /// The pod.
        pod: String,
        /// `ErrImagePull`, `ImagePullBackOff`, `CrashLoopBackOff`, `CreateContainerConfigError`, `Unschedulable`, …
        reason: String,
        /// Kubernetes' message, plus what to do.
        message: String,
        /// The container's last log lines.
        logs: String,
    },
    /// The Deployment did not progress in time.
    #[error(
        "plugin Deployment {deployment} failed to progress (ProgressDeadlineExceeded): {message}"
    )]
    ProgressDeadlineExceeded {
        /// The Deployment.
        deployment: String,
        /// Kubernetes' message.
        message: String,
    },
    /// The ReplicaSet cannot create the plugin's pods, e.g. rejected by Pod Security
    /// admission or a quota (the Deployment's `ReplicaFailure` condition).
    #[error(
        "plugin Deployment {deployment} cannot create its pods ({reason}): {message}; fix the pod spec (or the namespace's policy) named in the message"
    )]
    PodsRejected {
        /// The Deployment.
        deployment: String,
        /// Kubernetes' reason (e.g. `FailedCreate`).
        reason: String,
        /// Kubernetes' message (e.g. the admission rejection).
        message: String,
    },
    /// The pod's log holds no handshake line: only log lines until a bound was hit or
    /// the container stopped.
    #[error(
        "plugin pod {pod} printed no handshake line ({lines} log lines read in {waited:?}{ended}; last: {last:?}); does the plugin call intercom::serve (or go-plugin's plugin.Serve), and does it start within KubernetesConfig::handshake_timeout?",
        ended = if *.ended { ", then its log ended" } else { "" }
    )]
    NoHandshake {
        /// The pod.
        pod: String,
        /// How long the log was read.
        waited: Duration,
        /// How many log lines came before giving up.
        lines: usize,
        /// The last of them.
        last: Option<String>,
        /// Whether the log ended (the container stopped).
        ended: bool,
    },
    /// The handshake line in the pod's log is invalid.
    #[error("plugin pod {pod} printed an invalid handshake line")]
    Handshake {
        /// The pod.
        pod: String,
        /// What is wrong.
        #[source]
        source: crate::HandshakeError,
    },
    /// Connecting to a pod failed.
    #[error("failed to connect to plugin pod {pod} at {address}")]
    Connect {
        /// The pod.
        pod: String,
        /// What was dialed.
        address: String,
        /// Why.
        #[source]
        source: crate::BoxError,
    },
    /// The host asked for AutoMTLS and the pod's plugin announced no certificate.
    #[error(
        "the plugin in pod {pod} does not support AutoMTLS: its handshake carries no certificate, and this host requires one; update the plugin image, or call ClientConfig::auto_mtls(false) to connect in plaintext (any pod that reaches the plugin can then call it)"
    )]
    AutoMtlsUnsupported {
        /// The pod.
        pod: String,
    },
    /// AutoMTLS set-up failed.
    #[error("failed to set up AutoMTLS for pod {pod}")]
    Tls {
        /// The pod.
        pod: String,
        /// Why.
        #[source]
        source: crate::tls::TlsError,
    },
    /// The start timeout ran out.
    #[error(
        "timeout while starting plugin {deployment} on Kubernetes (waited {waited:?} in step `{step}`); raise ClientConfig::start_timeout if pods are slow to become ready"
    )]
    Timeout {
        /// The Deployment.
        deployment: String,
        /// The step.
        step: &'static str,
        /// How long.
        waited: Duration,
    },
    /// The Deployment disappeared.
    #[error("plugin Deployment {deployment} was deleted")]
    Deleted {
        /// The Deployment.
        deployment: String,
    },
    /// Reattach target does not exist.
    #[error("no plugin Deployment {deployment} in namespace {namespace} to reattach to")]
    NotFound {
        /// The Deployment.
        deployment: String,
        /// The namespace.
        namespace: String,
    },
}

fn forbidden_hint(err: &kube::Error) -> &'static str {
    match err {
        kube::Error::Api(s) if s.code == 403 => {
            ": forbidden; the host's credentials lack a permission: bind the Role in deploy/rbac.yaml to its ServiceAccount"
        }
        _ => "",
    }
}

fn log_tail(logs: &str) -> String {
    if logs.trim().is_empty() {
        String::new()
    } else {
        format!("\nlast lines of the container's log:\n{logs}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_numbers_are_checked_and_never_panic() {
        DEFAULT_RETRY.validate().unwrap();
        for (factor, jitter) in [
            (f64::NAN, 0.1),
            (-1.0, 0.1),
            (1.0, f64::INFINITY),
            (1.0, -0.5),
        ] {
            let retry = Retry {
                factor,
                jitter,
                ..DEFAULT_RETRY
            };
            assert!(matches!(
                retry.validate(),
                Err(KubeError::InvalidRetry { .. })
            ));
        }
        let ms = Duration::from_millis(10);
        assert_eq!(Retry::scale(ms, f64::NAN), Retry::MAX_DELAY);
        assert_eq!(Retry::scale(ms, -2.0), Retry::MAX_DELAY);
        assert_eq!(Retry::scale(ms, 1e300), Retry::MAX_DELAY);
        assert_eq!(Retry::scale(ms, 2.0), Duration::from_millis(20));
    }

    #[test]
    fn retryable_errors() {
        let api = |code| {
            kube::Error::Api(Box::new(kube::core::Status {
                code,
                ..kube::core::Status::default()
            }))
        };
        for code in [403, 404, 405, 409, 422] {
            assert!(!is_retryable_kube_api_error(&api(code)), "{code}");
        }
        for code in [429, 500, 503, 504] {
            assert!(is_retryable_kube_api_error(&api(code)), "{code}");
        }
        let forbidden = KubeError::Api {
            step: "create Deployment greeter".into(),
            source: api(403),
        };
        assert!(
            forbidden.to_string().contains("deploy/rbac.yaml"),
            "{forbidden}"
        );
    }
}
