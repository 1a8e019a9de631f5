//! Namespaces, plugin configs and clients, and the plugin's pods.

use std::time::{Duration, Instant};

use intercom::runtime::kubernetes::{ConnectMode, KubernetesConfig, PluginWorkload};
use intercom::tonic::transport::Channel;
use intercom::{Client, ClientConfig};
use k8s_openapi::api::core::v1::{Namespace, Pod, ServiceAccount};
use kube::api::{Api, ListParams, PostParams};

use crate::{HANDSHAKE, host_plugins, kv};

/// Creates namespace `name` and waits for its default ServiceAccount.
///
/// # Panics
/// When the namespace cannot be created or its ServiceAccount does not appear in 30 s.
pub async fn namespace(client: &kube::Client, name: &str) -> String {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": name}}))
        .expect("a Namespace object");
    api.create(&PostParams::default(), &ns)
        .await
        .expect("namespace");
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), name);
    let deadline = Instant::now() + Duration::from_secs(30);
    while sas.get_opt("default").await.ok().flatten().is_none() {
        assert!(
            Instant::now() < deadline,
            "default ServiceAccount never appeared"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    name.to_string()
}

/// A config running `workload` as `name` in `ns`.
pub fn config(
    client: &kube::Client,
    ns: &str,
    name: &str,
    workload: PluginWorkload,
    mode: ConnectMode,
) -> KubernetesConfig {
    KubernetesConfig::new(client.clone(), ns)
        .workload(name, &workload)
        .connect(mode)
}

/// A host client for the test plugin on Kubernetes.
pub fn plugin_client(kube: KubernetesConfig) -> Client {
    Client::new(
        ClientConfig::new(HANDSHAKE, host_plugins(), kube).start_timeout(Duration::from_secs(90)),
    )
}

/// The KV client of a started host.
///
/// # Panics
/// When the plugin does not start or has no `kv_grpc`.
pub async fn kv_client(client: &Client) -> kv::kv_client::KvClient<Channel> {
    client
        .connect()
        .await
        .expect("the plugin starts")
        .dispense("kv_grpc")
        .expect("dispense kv_grpc")
}

/// The plugin's pods in `ns` (by the plugin label), by name, with their IPs.
///
/// # Panics
/// When the pods cannot be listed.
pub async fn plugin_pods(kube: &kube::Client, ns: &str, plugin: &str) -> Vec<(String, String)> {
    let pods: Api<Pod> = Api::namespaced(kube.clone(), ns);
    pods.list(&ListParams::default().labels(&format!("intercom.dev/plugin={plugin}")))
        .await
        .expect("list the plugin's pods")
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(|p| {
            (
                p.metadata.name.unwrap_or_default(),
                p.status.and_then(|s| s.pod_ip).unwrap_or_default(),
            )
        })
        .collect()
}

/// Which replica answered: the test plugin's pod IP.
///
/// # Errors
/// The call failed.
pub async fn whoami(kv: &mut kv::kv_client::KvClient<Channel>) -> Result<String, tonic::Status> {
    let who = kv
        .get(kv::GetRequest {
            key: "whoami".into(),
        })
        .await?
        .into_inner()
        .value;
    Ok(String::from_utf8_lossy(&who).into_owned())
}

/// Retries [`whoami`] until it answers (a reconnect in progress), for at most 60 s.
///
/// # Panics
/// When no call succeeds within 60 s.
pub async fn whoami_eventually(kv: &mut kv::kv_client::KvClient<Channel>) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match whoami(kv).await {
            Ok(who) => return who,
            Err(e) => {
                assert!(Instant::now() < deadline, "no answer: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}
