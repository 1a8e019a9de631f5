//! The host's own pod as the owner of the plugin's Deployment, so the garbage collector
//! removes the plugin when the host pod goes.
//!
//! Only within one namespace: an ownerReference names no namespace, so the garbage
//! collector looks for the owner in the dependent's namespace, does not find a host pod
//! that runs elsewhere, and deletes the plugin's objects at once. A host in namespace `a`
//! launching plugins in `b` therefore sets no owner; its plugins outlive a host that dies
//! without `kill`. What cleans them up then: a host that stops normally deletes them
//! (`kill`, or drop inside a tokio runtime); otherwise
//! [`discover`](super::discover) lists them (their `intercom.dev/host` label names the host
//! pod) and a reattach with [`delete_on_kill`](super::KubernetesConfig::delete_on_kill)
//! removes them.

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Api;

/// The pod the host runs in (downward API: `POD_NAME` and `POD_NAMESPACE`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HostPod {
    /// Its name (the default `intercom.dev/host` label).
    pub(crate) name: String,
    /// It as the owner of the plugin's objects, when it may be one.
    pub(crate) owner: Option<OwnerReference>,
}

/// The host's pod, when it runs in one, with an owner reference for objects in
/// `plugin_namespace` if that is the pod's own namespace.
pub(crate) async fn host_pod(client: &kube::Client, plugin_namespace: &str) -> Option<HostPod> {
    let name = std::env::var("POD_NAME").ok()?;
    let host_namespace = std::env::var("POD_NAMESPACE").ok()?;
    Some(host_pod_named(client, name, &host_namespace, plugin_namespace).await)
}

async fn host_pod_named(
    client: &kube::Client,
    name: String,
    host_namespace: &str,
    plugin_namespace: &str,
) -> HostPod {
    if !may_own(host_namespace, plugin_namespace, &name) {
        return HostPod { name, owner: None };
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), host_namespace);
    let owner = match pods.get(&name).await {
        Ok(pod) => pod.metadata.uid.map(|uid| pod_owner(&name, uid)),
        Err(err) => {
            tracing::warn!(
                error = &err as &dyn std::error::Error,
                "running in a pod but cannot read it; plugins will not be garbage-collected with the host"
            );
            None
        }
    };
    HostPod { name, owner }
}

/// Whether the host pod `host` in `host_namespace` may own objects in `plugin_namespace`;
/// says why not in the log.
fn may_own(host_namespace: &str, plugin_namespace: &str, host: &str) -> bool {
    if host_namespace == plugin_namespace {
        return true;
    }
    tracing::info!(
        host_pod = host,
        host_namespace,
        plugin_namespace,
        "the host pod is in another namespace than its plugins: no ownerReference to it (the garbage collector would delete the plugin at once); the plugin is deleted by kill, not with the host pod"
    );
    false
}

fn pod_owner(name: &str, uid: String) -> OwnerReference {
    OwnerReference {
        api_version: "v1".into(),
        kind: "Pod".into(),
        name: name.into(),
        uid,
        controller: Some(false),
        block_owner_deletion: Some(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Reading the host pod is covered against a real apiserver by
    // tests/tests/e2e_host_namespace.rs.
    #[test]
    fn a_host_pod_may_own_objects_only_in_its_own_namespace() {
        assert!(may_own("plugins", "plugins", "host-0"));
        assert!(!may_own("hosts", "plugins", "host-0"));
    }
}
