//! What the Kubernetes e2e test binaries share: one control plane per binary (intercom-envtest,
//! or the cluster of `INTERCOM_E2E_KUBECONFIG`), clients for it, namespaces, pod helpers, and
//! the checks every test ends with.
//!
//! Behind the `kubernetes` feature (on by default). The e2e binaries import what they use:
//! `use intercom_tests::kubernetes::{kube_client, namespace, assert_nothing_left, …}`.

mod cleanup;
mod clients;
mod control_plane;
mod plugins;

use std::time::Duration;

pub use cleanup::assert_nothing_left;
pub use clients::{client_for_token, cluster_config, external_cluster_config, kube_client};
pub use control_plane::{
    env, on_external_cluster, on_real_node, pinned_image, require_routed_pod_range,
    test_plugin_path,
};
pub use plugins::{
    config, kv_client, namespace, plugin_client, plugin_pods, whoami, whoami_eventually,
};

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

/// Runs a test body with [`TEST_TIMEOUT`].
///
/// # Panics
/// When the body takes longer.
pub async fn timed<F: std::future::Future<Output = ()>>(f: F) {
    tokio::time::timeout(TEST_TIMEOUT, f)
        .await
        .expect("test timed out");
}
