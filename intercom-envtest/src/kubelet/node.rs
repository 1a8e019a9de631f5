//! The Node object: registration, status heartbeat, Lease renewal, not-ready taints.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeStatus,
    NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference, Time};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::WatchStreamExt as _;
use kube::runtime::watcher;

use super::{KubeletError, Shared};

/// Namespace of node Leases.
const LEASE_NAMESPACE: &str = "kube-node-lease";
/// Taints the node-lifecycle controller puts on nodes it thinks are down.
const NOT_READY_TAINTS: [&str; 2] = [
    "node.kubernetes.io/not-ready",
    "node.kubernetes.io/unreachable",
];
/// Kubelet version reported in `nodeInfo`.
const KUBELET_VERSION: &str = "v1.35.4";

/// The labels a kubelet puts on its node, plus the configured extras.
pub(crate) fn labels(node: &str, extra: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let mut labels = BTreeMap::from([
        ("kubernetes.io/hostname".to_owned(), node.to_owned()),
        (
            "kubernetes.io/os".to_owned(),
            std::env::consts::OS.to_owned(),
        ),
        ("kubernetes.io/arch".to_owned(), arch.to_owned()),
        (
            "beta.kubernetes.io/os".to_owned(),
            std::env::consts::OS.to_owned(),
        ),
        ("beta.kubernetes.io/arch".to_owned(), arch.to_owned()),
    ]);
    labels.extend(extra.clone());
    labels
}

fn condition(
    kind: &str,
    ok: bool,
    reason: &str,
    message: &str,
    now: Timestamp,
    since: Timestamp,
) -> NodeCondition {
    NodeCondition {
        type_: kind.to_owned(),
        status: if ok { "True" } else { "False" }.to_owned(),
        reason: Some(reason.to_owned()),
        message: Some(message.to_owned()),
        last_heartbeat_time: Some(Time(now)),
        last_transition_time: Some(Time(since)),
    }
}

fn status(shared: &Shared, since: Timestamp) -> NodeStatus {
    let now = Timestamp::now();
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let resources = BTreeMap::from([
        ("cpu".to_owned(), Quantity(cpus.to_string())),
        ("memory".to_owned(), Quantity("16Gi".into())),
        ("pods".to_owned(), Quantity("110".into())),
        ("ephemeral-storage".to_owned(), Quantity("100Gi".into())),
    ]);
    NodeStatus {
        conditions: Some(vec![
            condition(
                "MemoryPressure",
                false,
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available",
                now,
                since,
            ),
            condition(
                "DiskPressure",
                false,
                "KubeletHasNoDiskPressure",
                "kubelet has no disk pressure",
                now,
                since,
            ),
            condition(
                "PIDPressure",
                false,
                "KubeletHasSufficientPID",
                "kubelet has sufficient PID available",
                now,
                since,
            ),
            condition(
                "Ready",
                true,
                "KubeletReady",
                "kubelet is posting ready status",
                now,
                since,
            ),
        ]),
        addresses: Some(vec![
            NodeAddress {
                type_: "InternalIP".into(),
                address: "127.0.0.1".into(),
            },
            NodeAddress {
                type_: "Hostname".into(),
                address: shared.node_name.clone(),
            },
        ]),
        daemon_endpoints: Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint {
                port: i32::from(shared.port),
            }),
        }),
        capacity: Some(resources.clone()),
        allocatable: Some(resources),
        node_info: Some(NodeSystemInfo {
            architecture: shared
                .node_labels
                .get("kubernetes.io/arch")
                .cloned()
                .unwrap_or_default(),
            boot_id: shared.boot_id.clone(),
            container_runtime_version: "intercom://0.1.0".into(),
            kernel_version: String::new(),
            kube_proxy_version: String::new(),
            kubelet_version: KUBELET_VERSION.into(),
            machine_id: shared.boot_id.clone(),
            operating_system: std::env::consts::OS.into(),
            os_image: "intercom-envtest".into(),
            system_uuid: shared.boot_id.clone(),
            ..NodeSystemInfo::default()
        }),
        ..NodeStatus::default()
    }
}

/// Creates (or takes over) the Node, writes its status and creates its Lease.
pub(crate) async fn register(shared: &Shared) -> Result<Node, KubeletError> {
    let nodes: Api<Node> = Api::all(shared.client.clone());
    let err = |source| KubeletError::RegisterNode {
        node: shared.node_name.clone(),
        source,
    };
    let node = Node {
        metadata: ObjectMeta {
            name: Some(shared.node_name.clone()),
            labels: Some(shared.node_labels.clone()),
            annotations: Some(BTreeMap::from([(
                "node.alpha.kubernetes.io/ttl".to_owned(),
                "0".to_owned(),
            )])),
            ..ObjectMeta::default()
        },
        ..Node::default()
    };
    match nodes.create(&PostParams::default(), &node).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {
            let patch = serde_json::json!({ "metadata": { "labels": shared.node_labels } });
            nodes
                .patch(
                    &shared.node_name,
                    &PatchParams::default(),
                    &Patch::Merge(patch),
                )
                .await
                .map_err(err)?;
        }
        Err(e) => return Err(err(e)),
    }
    let patch = serde_json::json!({ "status": status(shared, Timestamp::now()) });
    let node = nodes
        .patch_status(
            &shared.node_name,
            &PatchParams::default(),
            &Patch::Merge(patch),
        )
        .await
        .map_err(err)?;
    renew_lease(shared, &node).await.map_err(err)?;
    Ok(node)
}

async fn renew_lease(shared: &Shared, node: &Node) -> kube::Result<()> {
    let leases: Api<Lease> = Api::namespaced(shared.client.clone(), LEASE_NAMESPACE);
    let lease = Lease {
        metadata: ObjectMeta {
            name: Some(shared.node_name.clone()),
            namespace: Some(LEASE_NAMESPACE.into()),
            owner_references: node.metadata.uid.clone().map(|uid| {
                vec![OwnerReference {
                    api_version: "v1".into(),
                    kind: "Node".into(),
                    name: shared.node_name.clone(),
                    uid,
                    ..OwnerReference::default()
                }]
            }),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(shared.node_name.clone()),
            lease_duration_seconds: Some(40),
            renew_time: Some(MicroTime(Timestamp::now())),
            ..LeaseSpec::default()
        }),
    };
    let params = PatchParams::apply("intercom-envtest-kubelet").force();
    leases
        .patch(&shared.node_name, &params, &Patch::Apply(&lease))
        .await
        .map(drop)
}

/// Renews the Lease every `lease_renew_interval` and re-posts the node status every
/// minute (the kubelet's `nodeStatusReportFrequency` is 5 min with leases). Runs until aborted.
pub(crate) async fn heartbeat(shared: Arc<Shared>, node: Node, since: Timestamp) {
    let nodes: Api<Node> = Api::all(shared.client.clone());
    let mut lease_tick = tokio::time::interval(shared.config.lease_renew_interval);
    let mut status_tick = tokio::time::interval(Duration::from_secs(60));
    lease_tick.tick().await;
    status_tick.tick().await;
    loop {
        tokio::select! {
            _ = lease_tick.tick() => {
                if let Err(error) = renew_lease(&shared, &node).await {
                    tracing::warn!(error = &error as &dyn std::error::Error, "failed to renew node lease");
                }
            }
            _ = status_tick.tick() => {
                let patch = serde_json::json!({ "status": status(&shared, since) });
                if let Err(error) = nodes.patch_status(&shared.node_name, &PatchParams::default(), &Patch::Merge(patch)).await {
                    tracing::warn!(error = &error as &dyn std::error::Error, "failed to post node status");
                }
            }
        }
    }
}

/// Removes not-ready/unreachable taints whenever they appear (the lifecycle controller
/// adds them before it sees the first heartbeat). Runs until aborted.
pub(crate) async fn untaint(shared: Arc<Shared>) {
    let nodes: Api<Node> = Api::all(shared.client.clone());
    let config = watcher::Config::default().fields(&format!("metadata.name={}", shared.node_name));
    let mut events = watcher::watcher(nodes.clone(), config)
        .default_backoff()
        .applied_objects()
        .boxed();
    while let Some(event) = events.next().await {
        let node = match event {
            Ok(node) => node,
            Err(error) => {
                tracing::warn!(
                    error = &error as &dyn std::error::Error,
                    "node watch failed; retrying"
                );
                continue;
            }
        };
        let taints = node
            .spec
            .as_ref()
            .and_then(|s| s.taints.clone())
            .unwrap_or_default();
        if !taints
            .iter()
            .any(|t| NOT_READY_TAINTS.contains(&t.key.as_str()))
        {
            continue;
        }
        let kept: Vec<_> = taints
            .into_iter()
            .filter(|t| !NOT_READY_TAINTS.contains(&t.key.as_str()))
            .collect();
        let patch = serde_json::json!({
            "metadata": { "resourceVersion": node.metadata.resource_version },
            "spec": { "taints": kept },
        });
        match nodes
            .patch(
                &shared.node_name,
                &PatchParams::default(),
                &Patch::Merge(patch),
            )
            .await
        {
            Ok(_) => tracing::debug!("removed not-ready taints from the node"),
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(error) => {
                tracing::warn!(
                    error = &error as &dyn std::error::Error,
                    "failed to remove node taints"
                );
            }
        }
    }
}
