//! `deploy/rbac.yaml` as shipped is enough for a host, and without it the start fails
//! with a clear 403 and leaves nothing.

use intercom::ClientError;
use intercom::runtime::kubernetes::{ConnectMode, KubeError, PluginWorkload};
use intercom_tests::kubernetes::{
    PLUGIN_IMAGE, assert_nothing_left, client_for_token, config, kube_client, kv_client, namespace,
    plugin_client, timed, whoami,
};
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, PostParams};

#[tokio::test]
async fn e2e_least_privilege_rbac() {
    timed(async {
        let admin = kube_client();
        let ns = namespace(&admin, "plugins").await;
        // deploy/rbac.yaml as shipped.
        let yaml =
            std::fs::read_to_string(intercom_tests::workspace_root().join("deploy/rbac.yaml"))
                .unwrap();
        let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&yaml).unwrap();
        for doc in docs {
            match doc["kind"].as_str() {
                Some("ServiceAccount") => {
                    let sa: ServiceAccount = serde_json::from_value(doc).unwrap();
                    Api::<ServiceAccount>::namespaced(admin.clone(), &ns)
                        .create(&PostParams::default(), &sa)
                        .await
                        .unwrap();
                }
                Some("Role") => {
                    let r: Role = serde_json::from_value(doc).unwrap();
                    Api::<Role>::namespaced(admin.clone(), &ns)
                        .create(&PostParams::default(), &r)
                        .await
                        .unwrap();
                }
                Some("RoleBinding") => {
                    let b: RoleBinding = serde_json::from_value(doc).unwrap();
                    Api::<RoleBinding>::namespaced(admin.clone(), &ns)
                        .create(&PostParams::default(), &b)
                        .await
                        .unwrap();
                }
                other => panic!("unexpected kind {other:?} in deploy/rbac.yaml"),
            }
        }
        let sas: Api<ServiceAccount> = Api::namespaced(admin.clone(), &ns);
        let unbound: ServiceAccount =
            serde_json::from_value(serde_json::json!({"metadata": {"name": "unbound"}})).unwrap();
        sas.create(&PostParams::default(), &unbound).await.unwrap();
        let token = |sa: &'static str| {
            let sas = sas.clone();
            async move {
                let req =
                    serde_json::from_value(serde_json::json!({"spec": {"audiences": []}})).unwrap();
                sas.create_token_request(sa, &PostParams::default(), &req)
                    .await
                    .unwrap()
                    .status
                    .unwrap()
                    .token
            }
        };
        // Bound to the shipped Role: works end to end.
        let host = client_for_token(&token("plugin-host").await);
        let client = plugin_client(config(
            &host,
            &ns,
            "rbac",
            PluginWorkload::new(PLUGIN_IMAGE),
            ConnectMode::PortForward,
        ));
        let mut kv = kv_client(&client).await;
        whoami(&mut kv).await.unwrap();
        // The Role covers the host Lease too (its creation only warns when forbidden).
        let leases: Api<k8s_openapi::api::coordination::v1::Lease> =
            Api::namespaced(admin.clone(), &ns);
        assert!(
            leases.get_opt("rbac").await.unwrap().is_some(),
            "no host Lease under the shipped Role"
        );
        client.kill().await;
        assert_nothing_left(&admin, &ns).await;
        // Without it: a clear 403, nothing left behind.
        let nobody = client_for_token(&token("unbound").await);
        let client = plugin_client(config(
            &nobody,
            &ns,
            "rbac",
            PluginWorkload::new(PLUGIN_IMAGE),
            ConnectMode::PortForward,
        ));
        match client.start().await {
            Err(ClientError::Kubernetes(err @ KubeError::Api { .. })) => {
                let text = err.to_string();
                assert!(
                    text.contains("forbidden") && text.contains("deploy/rbac.yaml"),
                    "{text}"
                );
            }
            other => panic!("unexpected: {other:?}"),
        }
        assert_nothing_left(&admin, &ns).await;
    })
    .await;
}
