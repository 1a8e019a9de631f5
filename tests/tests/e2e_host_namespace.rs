//! A host running in a pod owns its plugins' Deployments only within its own namespace
//! (an ownerReference across namespaces makes the garbage collector delete the plugin at
//! once), end to end against intercom-envtest.
//!
//! One test in its own binary: it sets the downward-API variables (`POD_NAME`,
//! `POD_NAMESPACE`) of the test process, which no other test may see.

use intercom::runtime::kubernetes::{ConnectMode, PluginWorkload};
use intercom_tests::kubernetes::{
    PLUGIN_IMAGE, assert_nothing_left, config, kube_client, namespace, plugin_client,
    require_routed_pod_range, timed,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, ListParams, PostParams};

/// A pod object named `host-0` standing for the host (it need not run).
async fn host_pod(kube: &kube::Client, ns: &str) -> Pod {
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "host-0"},
        "spec": {"containers": [{"name": "host", "image": "intercom.test/not-a-plugin:1"}]}
    }))
    .unwrap();
    Api::<Pod>::namespaced(kube.clone(), ns)
        .create(&PostParams::default(), &pod)
        .await
        .unwrap()
}

/// Starts the test plugin in `ns` as a host in pod `host-0` of `host_ns` would, and
/// returns its Deployment's owner references.
async fn owners_of_a_plugin_launched_from(
    kube: &kube::Client,
    host_ns: &str,
    ns: &str,
    name: &str,
) -> (intercom::Client, Vec<OwnerReference>) {
    // SAFETY (edition 2024 `set_var`): the only test of this binary, and no other thread
    // of it reads the environment while the variables change.
    unsafe {
        std::env::set_var("POD_NAME", "host-0");
        std::env::set_var("POD_NAMESPACE", host_ns);
    }
    let workload = PluginWorkload::new(PLUGIN_IMAGE);
    let client = plugin_client(config(kube, ns, name, workload, ConnectMode::Endpoints));
    client.start().await.expect("the plugin starts");
    let deployments: Api<Deployment> = Api::namespaced(kube.clone(), ns);
    let lp = ListParams::default().labels(&format!("intercom.dev/plugin={name}"));
    let listed = deployments.list(&lp).await.unwrap().items;
    assert_eq!(listed.len(), 1, "one Deployment for {name}");
    let owners = listed[0]
        .metadata
        .owner_references
        .clone()
        .unwrap_or_default();
    (client, owners)
}

#[tokio::test]
async fn e2e_a_host_pod_owns_plugins_only_in_its_own_namespace() {
    require_routed_pod_range();
    timed(async {
        let kube = kube_client();
        let hosts = namespace(&kube, "hostns-hosts").await;
        let plugins = namespace(&kube, "hostns-plugins").await;
        let _elsewhere = host_pod(&kube, &hosts).await;
        let beside = host_pod(&kube, &plugins).await;

        // Across namespaces: no owner (the GC would delete the plugin), and it still runs.
        let (across, owners) =
            owners_of_a_plugin_launched_from(&kube, &hosts, &plugins, "across").await;
        assert!(
            owners.iter().all(|o| o.kind != "Pod"),
            "no ownerReference to a host pod in another namespace: {owners:?}"
        );
        across
            .connect()
            .await
            .unwrap()
            .ping()
            .await
            .expect("the plugin survives");

        // In its own namespace: the host pod owns the Deployment, by UID.
        let (same, owners) =
            owners_of_a_plugin_launched_from(&kube, &plugins, &plugins, "same").await;
        let pod_owner = owners
            .iter()
            .find(|o| o.kind == "Pod")
            .expect("owned by the host pod");
        assert_eq!(Some(&pod_owner.uid), beside.metadata.uid.as_ref());
        assert_eq!(pod_owner.name, "host-0");

        across.kill().await;
        same.kill().await;
        for ns in [&hosts, &plugins] {
            let pods: Api<Pod> = Api::namespaced(kube.clone(), ns);
            pods.delete("host-0", &DeleteParams::default())
                .await
                .unwrap();
        }
        assert_nothing_left(&kube, &plugins).await;
    })
    .await;
}
