//! The Kubernetes objects of a plugin: built from an image by [`PluginWorkload`], or
//! given whole; then `inject` adds what the SDK needs.

mod injection;
mod pod_security;
mod workload;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

pub(crate) use injection::{Injection, inject};
pub use pod_security::DEFAULT_RUN_AS_USER;
pub use workload::PluginWorkload;

/// `app.kubernetes.io/managed-by`: set to `intercom` on everything the SDK creates.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// The value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY: &str = "intercom";
/// The plugin's name.
pub const PLUGIN_LABEL: &str = "intercom.dev/plugin";
/// The id of the host that launched it.
pub const HOST_LABEL: &str = "intercom.dev/host";
/// One launch (the Deployment's own pods carry it too).
pub const INSTANCE_LABEL: &str = "intercom.dev/instance";
/// The app protocol versions the host offered (for discovery).
pub const PROTOCOL_ANNOTATION: &str = "intercom.dev/protocol-versions";
/// The env var carrying the pod IP (downward API) into `INTERCOM_ADVERTISE_ADDR`.
pub const POD_IP_ENV: &str = crate::protocol::env::POD_IP;

/// The Service is owned by the Deployment, so deleting the Deployment removes it.
pub(crate) fn owner_reference(deployment: &Deployment) -> Option<OwnerReference> {
    Some(OwnerReference {
        api_version: "apps/v1".into(),
        kind: "Deployment".into(),
        name: deployment.metadata.name.clone()?,
        uid: deployment.metadata.uid.clone()?,
        controller: Some(false),
        block_owner_deletion: Some(true),
    })
}

#[cfg(test)]
mod tests;
