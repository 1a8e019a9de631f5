//! What the Kubernetes e2e test binaries share: one control plane per binary (intercom-envtest,
//! or the cluster of `INTERCOM_E2E_KUBECONFIG`), clients for it, namespaces, pod helpers, and
//! the checks every test ends with. Each binary uses a part of it.
#![allow(dead_code)]

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use intercom::runtime::kubernetes::{ConnectMode, KubernetesConfig, PluginWorkload};
use intercom::tonic::transport::Channel;
use intercom::{Client, ClientConfig};
use intercom_envtest::Env;
use intercom_tests::{HANDSHAKE, host_plugins, kv};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Pod, Service, ServiceAccount};
use kube::api::{Api, ListParams, PostParams};

/// The test plugin's image.
pub const PLUGIN_IMAGE: &str = "intercom.test/test-plugin:1";
/// The `#[intercom::plugin]` test plugin's image.
pub const MACRO_IMAGE: &str = "intercom.test/macro-plugin:1";
/// The test host (`test-host`), for a host running in a pod.
pub const HOST_IMAGE: &str = "intercom.test/test-host:1";
/// An image that is not a plugin (`sleep`).
pub const SLEEPER_IMAGE: &str = "intercom.test/sleeper:1";
/// The test plugin pinned by a digest that is not its own.
pub const WRONG_DIGEST_IMAGE: &str = "intercom.test/test-plugin@sha256:0000000000000000000000000000000000000000000000000000000000000000";
/// The longest one test may take.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(180);

/// The path of the test plugin's executable.
pub fn test_plugin_path() -> &'static str {
    env!("CARGO_BIN_EXE_test-plugin")
}

/// Whether envtest runs a real node (containerd, kubelet, …: `INTERCOM_ENVTEST_NODE=real`,
/// set by `intercom-envtest/real-node-ns.sh`) rather than the process kubelet.
pub fn on_real_node() -> bool {
    !on_external_cluster()
        && matches!(
            intercom_envtest::NodeKind::from_env(),
            Ok(kind) if kind != intercom_envtest::NodeKind::Process
        )
}

/// The test plugin pinned by its real digest: on the process kubelet the executable's
/// sha256 (which it reports as the pod's imageID), on a real node the manifest digest of
/// the image envtest built and imported.
pub fn pinned_image() -> String {
    use sha2::Digest;
    if on_real_node() {
        let digest = env()
            .real_node()
            .and_then(|node| node.image_digest(PLUGIN_IMAGE))
            .expect("the real node built the test plugin's image");
        return format!("intercom.test/test-plugin@{digest}");
    }
    let bytes = std::fs::read(test_plugin_path()).expect("test plugin");
    format!(
        "intercom.test/test-plugin@sha256:{}",
        hex::encode(sha2::Sha256::digest(bytes))
    )
}

/// One control plane for the whole test binary, on a runtime of its own so it outlives
/// each test's runtime. Tests build their own clients from its config.
pub fn env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    ENV.get_or_init(|| {
        let rt = RUNTIME.get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime")
        });
        let mut builder = Env::builder()
            .image(PLUGIN_IMAGE, test_plugin_path())
            .image(SLEEPER_IMAGE, "/bin/sleep")
            .image(MACRO_IMAGE, env!("CARGO_BIN_EXE_macro-plugin"))
            .image(HOST_IMAGE, env!("CARGO_BIN_EXE_test-host"))
            .backoff_base(Duration::from_millis(500));
        if !on_real_node() {
            // The process kubelet maps references to executables; a real node has the
            // images it built, under their own digests.
            builder = builder
                .image(WRONG_DIGEST_IMAGE, test_plugin_path())
                .image(pinned_image(), test_plugin_path());
        }
        std::thread::scope(|s| {
            s.spawn(|| {
                rt.block_on(builder.start())
                    .unwrap_or_else(|e| panic!("envtest failed to start: {e}"))
            })
            .join()
            .expect("env thread")
        })
    })
}

/// Whether the tests run against the cluster of `INTERCOM_E2E_KUBECONFIG` (kind), not envtest.
pub fn on_external_cluster() -> bool {
    std::env::var_os("INTERCOM_E2E_KUBECONFIG").is_some()
}

/// Endpoints mode dials pod IPs from EndpointSlices, which refuse loopback addresses: it
/// needs the routed pod range `scripts/test.sh` sets up. Missing is a failure.
pub fn require_routed_pod_range() {
    if on_external_cluster() {
        return;
    }
    assert!(
        intercom_envtest::env::pod_cidr_from_env()
            .ok()
            .flatten()
            .is_some(),
        "INTERCOM_ENVTEST_POD_CIDR is not set: run the suite through scripts/test.sh"
    );
}

/// The admin config of the cluster under test.
pub fn cluster_config() -> kube::Config {
    match std::env::var_os("INTERCOM_E2E_KUBECONFIG") {
        Some(path) => external_cluster_config(path.into()),
        None => env().control_plane().kube_config(),
    }
}

/// The config of the kubeconfig at `path`. Tests call this from inside their own
/// runtime, where no runtime may be blocked on or dropped: kube's async loader runs on a
/// runtime made, used and dropped on a thread of its own.
pub fn external_cluster_config(path: std::path::PathBuf) -> kube::Config {
    std::thread::spawn(move || {
        let kubeconfig = kube::config::Kubeconfig::read_from(&path)
            .unwrap_or_else(|e| panic!("INTERCOM_E2E_KUBECONFIG {}: {e}", path.display()));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(kube::Config::from_custom_kubeconfig(
            kubeconfig,
            &kube::config::KubeConfigOptions::default(),
        ))
        .expect("kubeconfig")
    })
    .join()
    .expect("kubeconfig thread")
}

/// The SDK's low-latency client (what the README recommends for `PortForward`).
pub fn kube_client() -> kube::Client {
    intercom::runtime::kubernetes::low_latency_client(cluster_config()).expect("kube client")
}

/// A client that authenticates with a ServiceAccount token only.
pub fn client_for_token(token: &str) -> kube::Client {
    let mut value = http::HeaderValue::try_from(format!("Bearer {token}")).expect("token header");
    value.set_sensitive(true);
    let mut config = cluster_config();
    config.auth_info = kube::config::AuthInfo::default();
    config.headers.push((http::header::AUTHORIZATION, value));
    intercom::runtime::kubernetes::low_latency_client(config).expect("token client")
}

/// Creates namespace `name` and waits for its default ServiceAccount.
pub async fn namespace(client: &kube::Client, name: &str) -> String {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).unwrap();
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
        ClientConfig::new(HANDSHAKE, host_plugins())
            .kubernetes(kube)
            .start_timeout(Duration::from_secs(90)),
    )
}

/// Nothing of the plugin's remains in `ns`: no Deployment, Service or pod labelled as
/// intercom's, and no container process of the namespace on envtest's kubelet.
pub async fn assert_nothing_left(client: &kube::Client, ns: &str) {
    let lp = ListParams::default().labels("app.kubernetes.io/managed-by=intercom");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
        Api::namespaced(client.clone(), ns);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let d = deployments.list(&lp).await.unwrap().items.len();
        let s = services.list(&lp).await.unwrap().items.len();
        let p = pods.list(&lp).await.unwrap().items.len();
        // Host Leases go with their Deployment (owner reference, garbage collector).
        let p = p + leases.list(&lp).await.unwrap().items.len();
        // And no container of the namespace runs on envtest's node.
        let processes: Vec<String> = if on_external_cluster() {
            Vec::new()
        } else if let Some(kubelet) = env().kubelet() {
            kubelet
                .started_processes(ns)
                .into_iter()
                .filter(|&pid| intercom_tests::pid_running(pid))
                .map(|pid| format!("pid {pid}"))
                .collect()
        } else {
            let node = env().real_node().expect("a process or a real node");
            node.running_containers(ns).await.expect("ctr")
        };
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

/// The KV client of a started host.
pub async fn kv_client(client: &Client) -> kv::kv_client::KvClient<Channel> {
    client.client().await.unwrap().dispense("kv_grpc").unwrap()
}

/// Runs a test body with [`TEST_TIMEOUT`].
pub async fn timed<F: std::future::Future<Output = ()>>(f: F) {
    tokio::time::timeout(TEST_TIMEOUT, f)
        .await
        .expect("test timed out");
}

/// The plugin's pods in `ns` (by the plugin label), by name, with their IPs.
pub async fn plugin_pods(kube: &kube::Client, ns: &str, plugin: &str) -> Vec<(String, String)> {
    let pods: Api<Pod> = Api::namespaced(kube.clone(), ns);
    pods.list(&ListParams::default().labels(&format!("intercom.dev/plugin={plugin}")))
        .await
        .unwrap()
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
