//! [`KubeError`]: the failures of the Kubernetes runtime, each with what to do.

use std::time::Duration;

use super::ValidationError;

/// Failures of the Kubernetes runtime. Each says what happened and what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KubeError {
    /// A [`Retry`](super::Retry) number cannot be used.
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
