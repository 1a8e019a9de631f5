//! Finding the intercom plugins running in a namespace.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams};

use super::KubeError;
use super::objects::{HOST_LABEL, MANAGED_BY, MANAGED_BY_LABEL, PLUGIN_LABEL, PROTOCOL_ANNOTATION};

/// One plugin Deployment found by [`discover`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DiscoveredPlugin {
    /// The Deployment's name (what `KubernetesConfig::reattach` takes).
    pub name: String,
    /// The plugin name label.
    pub plugin: String,
    /// The host that launched it.
    pub host: String,
    /// The plugin container's image.
    pub image: String,
    /// Desired replicas.
    pub replicas: i32,
    /// Ready replicas.
    pub ready_replicas: i32,
    /// The app protocol versions the host offered.
    pub protocol_versions: String,
    /// When the Deployment was created.
    pub created: Option<Timestamp>,
}

impl DiscoveredPlugin {
    /// Time since creation.
    pub fn age(&self) -> Option<std::time::Duration> {
        let created = self.created?;
        let span = Timestamp::now().duration_since(created);
        std::time::Duration::try_from(span).ok()
    }
}

/// Lists the plugins intercom runs in `namespace` (label
/// `app.kubernetes.io/managed-by=intercom`).
///
/// # Errors
/// [`KubeError::Api`] when listing fails (e.g. 403 without `deploy/rbac.yaml`).
pub async fn discover(
    client: kube::Client,
    namespace: &str,
) -> Result<Vec<DiscoveredPlugin>, KubeError> {
    let api: Api<Deployment> = Api::namespaced(client, namespace);
    let list = api
        .list(&ListParams::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}")))
        .await
        .map_err(|source| KubeError::Api {
            step: format!("list plugin Deployments in namespace {namespace}"),
            source,
        })?;
    Ok(list
        .items
        .into_iter()
        .map(|d| {
            let labels = d.metadata.labels.clone().unwrap_or_default();
            let label = |k: &str| labels.get(k).cloned().unwrap_or_default();
            let image = super::validate::validate_deployment(&d)
                .ok()
                .and_then(|pc| {
                    d.spec
                        .as_ref()?
                        .template
                        .spec
                        .as_ref()?
                        .containers
                        .get(pc.index)?
                        .image
                        .clone()
                })
                .unwrap_or_default();
            DiscoveredPlugin {
                name: d.metadata.name.clone().unwrap_or_default(),
                plugin: label(PLUGIN_LABEL),
                host: label(HOST_LABEL),
                image,
                replicas: d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
                ready_replicas: d
                    .status
                    .as_ref()
                    .and_then(|s| s.ready_replicas)
                    .unwrap_or(0),
                protocol_versions: d
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(PROTOCOL_ANNOTATION).cloned())
                    .unwrap_or_default(),
                created: d.metadata.creation_timestamp.as_ref().map(|t| t.0),
            }
        })
        .collect())
}
