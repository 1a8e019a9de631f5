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
    /// `INTERCOM_ENVTEST_POD_CIDR` is not an IPv4 CIDR.
    #[error("INTERCOM_ENVTEST_POD_CIDR={value:?} is not an IPv4 range like 10.213.0.0/16")]
    PodCidr {
        /// The value found.
        value: String,
    },
}

/// A running test cluster: etcd, kube-apiserver, kube-controller-manager and one
/// process [`Kubelet`] (which also schedules).
///
/// Dropping it kills the pods' processes first, then the control plane.
#[derive(Debug)]
pub struct Env {
    // Field order is drop order: the kubelet goes before the apiserver it talks to.
    kubelet: Kubelet,
    control_plane: ControlPlane,
}

/// Builder of an [`Env`]: the image map and kubelet knobs.
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct EnvBuilder {
    kubelet: KubeletConfig,
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

    /// Replaces the whole kubelet configuration (images included).
    pub fn kubelet_config(mut self, config: KubeletConfig) -> Self {
        self.kubelet = config;
        self
    }

    /// Starts the control plane, then the kubelet.
    ///
    /// Without an explicit [`pod_cidr`](Self::pod_cidr), the range in
    /// `INTERCOM_ENVTEST_POD_CIDR` is used when set (the project's `scripts/test.sh` sets
    /// it, inside a private network namespace where that range is routed to `lo`).
    ///
    /// # Errors
    /// [`EnvError::ControlPlane`] or [`EnvError::Kubelet`].
    ///
    /// # Cancel safety
    /// Cancel safe: whatever started is stopped when the future is dropped.
    pub async fn start(mut self) -> Result<Env, EnvError> {
        if self.kubelet.pod_cidr.is_none()
            && let Some(cidr) = pod_cidr_from_env()?
        {
            self.kubelet = self.kubelet.pod_cidr(cidr);
        }
        let control_plane = ControlPlane::start().await?;
        let kubelet =
            Kubelet::start(control_plane.client(), control_plane.pki(), self.kubelet).await?;
        Ok(Env {
            kubelet,
            control_plane,
        })
    }
}

/// The variable naming a pod IP range routed to this host (see [`EnvBuilder::start`]).
pub const POD_CIDR_ENV: &str = "INTERCOM_ENVTEST_POD_CIDR";

/// The pod range from [`POD_CIDR_ENV`], if set.
///
/// # Errors
/// [`EnvError::PodCidr`] when the value is not an IPv4 CIDR.
pub fn pod_cidr_from_env() -> Result<Option<PodCidr>, EnvError> {
    match std::env::var(POD_CIDR_ENV) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| EnvError::PodCidr { value: v }),
        _ => Ok(None),
    }
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

    /// The kubelet.
    pub fn kubelet(&self) -> &Kubelet {
        &self.kubelet
    }

    /// Stops everything: the pods' processes are killed and reaped
    /// ([`Kubelet::shutdown`]), then the control plane stops. Dropping the `Env` does the
    /// same without waiting for the processes to be reaped.
    ///
    /// # Cancel safety
    /// Dropping the future falls back to [`Drop`].
    pub async fn shutdown(self) {
        let Env {
            kubelet,
            control_plane,
        } = self;
        kubelet.shutdown().await;
        drop(control_plane);
    }
}
