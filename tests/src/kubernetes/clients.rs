//! Kubernetes clients for the cluster under test.

use super::control_plane::env;

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
///
/// # Panics
/// When the kubeconfig cannot be read or loaded.
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
