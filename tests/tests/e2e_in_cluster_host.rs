//! A host running inside the cluster, as users run operators: the test applies
//! `deploy/rbac.yaml` as shipped and `deploy/host-in-cluster.yaml` (only the namespace,
//! the host image and the test host's own env changed) in a namespace that enforces Pod
//! Security "restricted". The host pod (`test-host` in its in-cluster mode) uses the
//! in-cluster config of its ServiceAccount and the downward-API env of the manifest, and
//! for `ConnectMode::Endpoints` and then `ConnectMode::ServiceDns` launches the test
//! plugin, calls it with a host-served callback and kills it. The test reads the outcome
//! from the host pod's log.
//!
//! **Real node only.** The process kubelet mounts no ServiceAccount token, gives pods no
//! network of their own and no route to the apiserver, so an in-cluster host cannot run
//! there; this test fails (it does not pass vacuously) unless envtest runs a real node:
//!
//! ```sh
//! cargo test -p intercom-tests --test e2e_in_cluster_host --no-run
//! INTERCOM_ENVTEST_POD_CIDR=10.213.0.0/16 INTERCOM_ENVTEST_SERVICE_CIDR=10.214.0.0/16 \
//!   intercom-envtest/real-node-ns.sh cargo test -p intercom-tests --test e2e_in_cluster_host --offline
//! ```
//!
//! The suite's real-node pass runs it; its process-kubelet pass must leave it out.

use std::time::Duration;

use intercom_tests::kubernetes::{
    HOST_IMAGE, PLUGIN_IMAGE, assert_nothing_left, kube_client, namespace, on_real_node, timed,
};
use k8s_openapi::api::core::v1::{Namespace, Pod, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, DeleteParams, LogParams, Patch, PatchParams, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use serde_json::{Value, json};

/// The namespace the shipped manifests name.
const SHIPPED_NAMESPACE: &str = "plugins";
/// The host pod's name in `deploy/host-in-cluster.yaml`.
const HOST_POD: &str = "plugin-host";
/// How long the host pod may take to launch, call and kill its two plugins.
const HOST_RUN: Duration = Duration::from_secs(120);

/// The documents of `deploy/<file>`, moved from [`SHIPPED_NAMESPACE`] to `ns`.
fn shipped(file: &str, ns: &str) -> Vec<Value> {
    let path = intercom_tests::workspace_root().join("deploy").join(file);
    let yaml = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let mut docs: Vec<Value> = serde_saphyr::from_multiple(&yaml).expect("deploy YAML");
    for doc in &mut docs {
        move_namespace(&mut doc["metadata"], file, ns);
        let subjects = doc.get_mut("subjects").and_then(Value::as_array_mut);
        for subject in subjects.into_iter().flatten() {
            move_namespace(subject, file, ns);
        }
    }
    docs
}

/// Replaces [`SHIPPED_NAMESPACE`] by `ns` in `meta` (metadata or an RBAC subject).
fn move_namespace(meta: &mut Value, file: &str, ns: &str) {
    assert_eq!(
        meta["namespace"], SHIPPED_NAMESPACE,
        "deploy/{file} names namespace {SHIPPED_NAMESPACE:?}"
    );
    meta["namespace"] = json!(ns);
}

/// The host pod of `deploy/host-in-cluster.yaml` running the test host: its image, and
/// the test host's own env after the manifest's.
fn test_host_pod(doc: Value) -> Pod {
    let mut pod: Pod = serde_json::from_value(doc).expect("a Pod");
    let spec = pod.spec.as_mut().expect("the Pod has a spec");
    let [container] = spec.containers.as_mut_slice() else {
        panic!("deploy/host-in-cluster.yaml: one container");
    };
    container.image = Some(HOST_IMAGE.into());
    let env = container.env.get_or_insert_with(Vec::new);
    for (name, value) in [
        ("INTERCOM_TEST_HOST_IN_CLUSTER", "1"),
        ("INTERCOM_TEST_HOST_PLUGIN_IMAGE", PLUGIN_IMAGE),
    ] {
        env.push(serde_json::from_value(json!({"name": name, "value": value})).expect("EnvVar"));
    }
    pod
}

/// Creates every document of the shipped manifests in `ns`.
async fn apply(kube: &kube::Client, ns: &str, docs: Vec<Value>) {
    let pp = PostParams::default();
    for doc in docs {
        match doc["kind"].as_str() {
            Some("ServiceAccount") => {
                let sa: ServiceAccount = serde_json::from_value(doc).unwrap();
                Api::namespaced(kube.clone(), ns)
                    .create(&pp, &sa)
                    .await
                    .unwrap();
            }
            Some("Role") => {
                let role: Role = serde_json::from_value(doc).unwrap();
                Api::namespaced(kube.clone(), ns)
                    .create(&pp, &role)
                    .await
                    .unwrap();
            }
            Some("RoleBinding") => {
                let binding: RoleBinding = serde_json::from_value(doc).unwrap();
                Api::namespaced(kube.clone(), ns)
                    .create(&pp, &binding)
                    .await
                    .unwrap();
            }
            Some("Pod") => {
                let pod = test_host_pod(doc);
                Api::namespaced(kube.clone(), ns)
                    .create(&pp, &pod)
                    .await
                    .unwrap();
            }
            other => panic!("unexpected kind {other:?} in deploy/"),
        }
    }
}

/// Makes `ns` enforce Pod Security "restricted" (the host pod and the plugin pods must
/// pass it).
async fn enforce_restricted(kube: &kube::Client, ns: &str) {
    let labels = json!({"metadata": {"labels": {
        "pod-security.kubernetes.io/enforce": "restricted",
        "pod-security.kubernetes.io/enforce-version": "latest",
    }}});
    Api::<Namespace>::all(kube.clone())
        .patch(ns, &PatchParams::default(), &Patch::Merge(&labels))
        .await
        .expect("label the namespace");
}

/// The host pod's phase once it finished (`None` if it did not within [`HOST_RUN`]).
async fn finished_phase(pods: &Api<Pod>) -> Option<String> {
    let phase = |pod: Option<&Pod>| {
        pod.and_then(|p| p.status.as_ref())
            .and_then(|s| s.phase.clone())
    };
    let done = |pod: Option<&Pod>| matches!(phase(pod).as_deref(), Some("Succeeded" | "Failed"));
    let pod = tokio::time::timeout(HOST_RUN, await_condition(pods.clone(), HOST_POD, done))
        .await
        .ok()?
        .expect("watch the host pod");
    phase(pod.as_ref())
}

#[tokio::test]
async fn e2e_a_host_pod_launches_calls_and_kills_its_plugins_in_cluster() {
    assert!(
        on_real_node(),
        "an in-cluster host needs envtest's real node (ServiceAccount tokens, pod networking): \
         run this binary through intercom-envtest/real-node-ns.sh"
    );
    timed(async {
        let kube = kube_client();
        let ns = namespace(&kube, "in-cluster").await;
        enforce_restricted(&kube, &ns).await;
        apply(&kube, &ns, shipped("rbac.yaml", &ns)).await;
        apply(&kube, &ns, shipped("host-in-cluster.yaml", &ns)).await;

        let pods: Api<Pod> = Api::namespaced(kube.clone(), &ns);
        let phase = finished_phase(&pods).await;
        let log = pods
            .logs(HOST_POD, &LogParams::default())
            .await
            .unwrap_or_else(|e| format!("(no log: {e})"));
        eprintln!("host pod log:\n{log}");
        assert_eq!(phase.as_deref(), Some("Succeeded"), "host pod log:\n{log}");
        for mode in ["endpoints", "service-dns"] {
            let line = format!("in-cluster {mode} ok: callback sum=5 owner=Pod/{HOST_POD}");
            assert!(
                log.lines().any(|l| l == line),
                "no line {line:?} in the host pod log:\n{log}"
            );
        }

        let host = pods.get(HOST_POD).await.unwrap();
        pods.delete(HOST_POD, &DeleteParams::default())
            .await
            .unwrap();
        let uid = host.metadata.uid.unwrap_or_default();
        await_condition(pods.clone(), HOST_POD, conditions::is_deleted(&uid))
            .await
            .expect("the host pod goes");
        assert_nothing_left(&kube, &ns).await;
    })
    .await;
}
