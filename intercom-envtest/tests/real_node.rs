//! The real node (containerd, runc, CNI, kubelet, kube-scheduler, kube-proxy, CoreDNS):
//! run by `intercom-envtest/real-node-ns.sh cargo test -p intercom-envtest --test real_node`.
//! Outside those namespaces every test here checks that the node refuses to start.
#![cfg(target_os = "linux")]

use std::time::Duration;

use intercom_envtest::{Env, EnvError, NodeKind};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::PostParams;

fn inside_real_node_namespaces() -> bool {
    std::env::var("INTERCOM_ENVTEST_NODE").as_deref() == Ok("real")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_runs_on_the_real_node() {
    let start = Env::builder()
        .node(NodeKind::Real)
        .image("intercom.test/echo:1", env!("CARGO_BIN_EXE_envtest-echo"))
        .start()
        .await;
    if !inside_real_node_namespaces() {
        let err = start.expect_err("a real node outside its namespaces");
        assert!(matches!(err, EnvError::RealNode(_)), "{err:?}");
        return;
    }
    let env = start.unwrap_or_else(|e| panic!("real node: {e:?}"));
    let pods: Api<Pod> = Api::namespaced(env.client(), "default");
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "echo"},
        "spec": {"containers": [{
            "name": "echo",
            "image": "intercom.test/echo:1",
            "imagePullPolicy": "Never",
        }]},
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let pod = pods.get("echo").await.unwrap();
        let status = pod.status.unwrap_or_default();
        if status.phase.as_deref() == Some("Running") && status.pod_ip.is_some() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "pod never ran: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    env.shutdown().await;
}
