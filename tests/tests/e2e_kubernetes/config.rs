//! What the config asks for: an image pinned by digest (refused unpinned), and a cluster
//! given by a kubeconfig file (`INTERCOM_E2E_KUBECONFIG`).

use intercom::ClientError;
use intercom::runtime::kubernetes::{ConnectMode, KubeError, PluginWorkload};
use intercom_tests::kubernetes::{
    PLUGIN_IMAGE, assert_nothing_left, config, env, kube_client, namespace, plugin_client, timed,
};
use kube::api::Api;

#[tokio::test]
async fn e2e_image_digest_pinning() {
    timed(async {
        let kube = kube_client();
        let ns = namespace(&kube, "e2e-digest").await;
        let client = plugin_client(
            config(
                &kube,
                &ns,
                "unpinned",
                PluginWorkload::new(PLUGIN_IMAGE),
                ConnectMode::PortForward,
            )
            .require_image_digest(true),
        );
        assert!(matches!(
            client.start().await,
            Err(ClientError::Kubernetes(KubeError::ImageNotPinned { .. }))
        ));
        assert_nothing_left(&kube, &ns).await;
    })
    .await;
}

/// The `INTERCOM_E2E_KUBECONFIG` path loads its kubeconfig from inside a test's runtime
/// (it used to drop a runtime there and panic), and the config reaches the cluster: here
/// envtest's, through its admin kubeconfig file, as an external cluster's would be.
#[tokio::test]
async fn e2e_an_external_kubeconfig_loads_inside_a_test_runtime() {
    timed(async {
        let path = env().control_plane().kubeconfig().to_path_buf();
        let config = intercom_tests::kubernetes::external_cluster_config(path);
        let kube = kube::Client::try_from(config).expect("a client from the kubeconfig");
        let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(kube);
        let list = namespaces
            .list(&kube::api::ListParams::default())
            .await
            .expect("the cluster answers");
        assert!(
            list.items
                .iter()
                .any(|n| n.metadata.name.as_deref() == Some("default"))
        );
    })
    .await;
}
