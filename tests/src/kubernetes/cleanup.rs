//! The check every e2e test ends with: nothing of its plugins is left.

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Api, ListParams};

use super::control_plane::{env, on_external_cluster};

/// Nothing of the plugin's remains in `ns`: no Deployment, Service or pod labelled as
/// intercom's, and no container process of the namespace on envtest's kubelet.
///
/// # Panics
/// When something is still there after 60 s, or the cluster cannot be asked.
pub async fn assert_nothing_left(client: &kube::Client, ns: &str) {
    let lp = ListParams::default().labels("app.kubernetes.io/managed-by=intercom");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let leases: Api<Lease> = Api::namespaced(client.clone(), ns);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let d = deployments
            .list(&lp)
            .await
            .expect("list Deployments")
            .items
            .len();
        let s = services.list(&lp).await.expect("list Services").items.len();
        let p = pods.list(&lp).await.expect("list pods").items.len();
        // Host Leases go with their Deployment (owner reference, garbage collector).
        let p = p + leases.list(&lp).await.expect("list Leases").items.len();
        // And no container of the namespace runs on envtest's node.
        let processes = running_containers(ns).await;
        if d + s + p == 0 && processes.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "left behind in {ns}: {d} deployments, {s} services, {p} pods and host Leases, processes {processes:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The containers of `ns` still running on envtest's node (none known on an external
/// cluster): process ids on the process kubelet, container ids on a real node.
async fn running_containers(ns: &str) -> Vec<String> {
    if on_external_cluster() {
        Vec::new()
    } else if let Some(kubelet) = env().kubelet() {
        kubelet
            .started_processes(ns)
            .into_iter()
            .filter(|&pid| crate::pid_running(pid))
            .map(|pid| format!("pid {pid}"))
            .collect()
    } else {
        let node = env().real_node().expect("a process or a real node");
        node.running_containers(ns).await.expect("ctr")
    }
}
