//! The objects a plugin Deployment owns besides its Service: the reattach identity
//! Secret and the NetworkPolicy.

use super::*;

/// The Secret holding the AutoMTLS identity the plugin's pods pin, so a host can reattach.
pub(super) fn identity_secret(deployment: &str) -> String {
    format!("{deployment}-intercom-host")
}

pub(super) async fn store_identity(
    config: &KubernetesConfig,
    name: &str,
    deployment: &Deployment,
    identity: &crate::tls::Identity,
) {
    use k8s_openapi::ByteString;
    use k8s_openapi::api::core::v1::Secret;
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(identity_secret(name)),
            owner_references: owner_reference(deployment).map(|o| vec![o]),
            labels: Some(
                [(
                    crate::runtime::kubernetes::objects::MANAGED_BY_LABEL.to_string(),
                    crate::runtime::kubernetes::objects::MANAGED_BY.to_string(),
                )]
                .into(),
            ),
            ..Default::default()
        },
        data: Some(
            [
                (
                    "cert.der".to_string(),
                    ByteString(identity.cert_der().to_vec()),
                ),
                (
                    "key.der".to_string(),
                    ByteString(identity.private_key_pkcs8_der().to_vec()),
                ),
            ]
            .into(),
        ),
        type_: Some("Opaque".into()),
        ..Secret::default()
    };
    let api: Api<Secret> = Api::namespaced(config.client.clone(), &config.namespace);
    if let Err(err) = api.create(&PostParams::default(), &secret).await {
        tracing::warn!(
            error = &err as &dyn std::error::Error,
            "failed to store the host identity; reattaching to this plugin with AutoMTLS will not work"
        );
    }
}

pub(super) async fn load_identity(
    config: &KubernetesConfig,
    name: &str,
) -> Result<crate::tls::Identity, KubeError> {
    use k8s_openapi::api::core::v1::Secret;
    let api: Api<Secret> = Api::namespaced(config.client.clone(), &config.namespace);
    let secret_name = identity_secret(name);
    let secret = api
        .get_opt(&secret_name)
        .await
        .map_err(|source| KubeError::Api {
            step: format!("read the host identity Secret {secret_name} (AutoMTLS: the plugin only trusts the host that launched it)"),
            source,
        })?
        .ok_or_else(|| KubeError::NotReattachable {
            deployment: name.into(),
        })?;
    let data = secret.data.unwrap_or_default();
    let field = |k: &str| data.get(k).map(|b| b.0.clone()).unwrap_or_default();
    crate::tls::Identity::from_der(&field("cert.der"), &field("key.der")).map_err(|source| {
        KubeError::Tls {
            pod: secret_name,
            source,
        }
    })
}

pub(super) async fn create_network_policy(
    config: &KubernetesConfig,
    name: &str,
    deployment: &Deployment,
    port: i32,
) {
    use k8s_openapi::api::networking::v1::NetworkPolicy;
    let pod_labels = crate::runtime::kubernetes::validate::pod_template_labels(deployment);
    let host_labels = std::env::var("INTERCOM_HOST_POD_LABELS").ok();
    let from = match host_labels {
        Some(labels) => {
            serde_json::json!([{ "podSelector": { "matchLabels": parse_labels(&labels) } }])
        }
        None => {
            serde_json::json!([{ "podSelector": { "matchLabels": { crate::runtime::kubernetes::objects::HOST_LABEL: "none" } } }])
        }
    };
    let policy: Result<NetworkPolicy, _> = serde_json::from_value(serde_json::json!({
        "metadata": {
            "name": name,
            "ownerReferences": owner_reference(deployment).into_iter().collect::<Vec<_>>(),
            "labels": { crate::runtime::kubernetes::objects::MANAGED_BY_LABEL: crate::runtime::kubernetes::objects::MANAGED_BY },
        },
        "spec": {
            "podSelector": { "matchLabels": pod_labels },
            "policyTypes": ["Ingress"],
            "ingress": [{ "from": from, "ports": [{ "port": port, "protocol": "TCP" }] }],
        }
    }));
    if let Ok(policy) = policy {
        let api: Api<NetworkPolicy> = Api::namespaced(config.client.clone(), &config.namespace);
        if let Err(err) = api.create(&PostParams::default(), &policy).await {
            tracing::warn!(
                error = &err as &dyn std::error::Error,
                "failed to create the plugin NetworkPolicy"
            );
        }
    }
}

pub(super) fn parse_labels(s: &str) -> BTreeMap<String, String> {
    s.split(',')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}
