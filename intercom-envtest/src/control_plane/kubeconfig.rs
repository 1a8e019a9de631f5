//! Self-contained kubeconfig files (certificates embedded as base64 PEM), built with
//! kube's own [`Kubeconfig`] type.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use kube::config::{
    AuthInfo, Cluster, Context, Kubeconfig, NamedAuthInfo, NamedCluster, NamedContext,
};

use super::pki::IssuedCert;

/// The name of the cluster, user and context in written kubeconfigs.
pub(super) const CONTEXT: &str = "intercom-envtest";

/// A kubeconfig for `server` that trusts `ca_pem` and authenticates with `client`.
pub(super) fn config(server: &str, ca_pem: &str, user: &str, client: &IssuedCert) -> Kubeconfig {
    Kubeconfig {
        clusters: vec![NamedCluster {
            name: CONTEXT.to_owned(),
            cluster: Some(Cluster {
                server: Some(server.to_owned()),
                certificate_authority_data: Some(STANDARD.encode(ca_pem)),
                ..Cluster::default()
            }),
            ..NamedCluster::default()
        }],
        auth_infos: vec![NamedAuthInfo {
            name: user.to_owned(),
            auth_info: Some(AuthInfo {
                client_certificate_data: Some(STANDARD.encode(&client.cert_pem)),
                client_key_data: Some(STANDARD.encode(&client.key_pem).into()),
                ..AuthInfo::default()
            }),
            ..NamedAuthInfo::default()
        }],
        contexts: vec![NamedContext {
            name: CONTEXT.to_owned(),
            context: Some(Context {
                cluster: CONTEXT.to_owned(),
                user: Some(user.to_owned()),
                namespace: Some("default".to_owned()),
                ..Context::default()
            }),
            ..NamedContext::default()
        }],
        current_context: Some(CONTEXT.to_owned()),
        kind: Some("Config".to_owned()),
        api_version: Some("v1".to_owned()),
        ..Kubeconfig::default()
    }
}

/// [`config`] as the text of a kubeconfig file: JSON, which is YAML, so kube-apiserver's
/// and kube-controller-manager's client-go loader read it as they read any kubeconfig.
pub(super) fn render(server: &str, ca_pem: &str, user: &str, client: &IssuedCert) -> String {
    serde_json::to_string_pretty(&config(server, ca_pem, user, client))
        // Invariant: a Kubeconfig is strings, options, vectors and string-keyed maps,
        // which serde_json always serializes.
        .expect("a Kubeconfig always serializes to JSON")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kube_parses_the_rendered_file() {
        let client = IssuedCert {
            cert_pem: "CERT".to_owned(),
            key_pem: "KEY".to_owned(),
        };
        let text = render(
            "https://127.0.0.1:6443",
            "CA",
            "system:kube-controller-manager",
            &client,
        );
        let parsed = kube::config::Kubeconfig::from_yaml(&text).expect("parse");
        assert_eq!(parsed.current_context.as_deref(), Some(CONTEXT));
        let cluster = parsed
            .clusters
            .first()
            .and_then(|c| c.cluster.as_ref())
            .expect("cluster");
        assert_eq!(cluster.server.as_deref(), Some("https://127.0.0.1:6443"));
        assert_eq!(cluster.certificate_authority_data.as_deref(), Some("Q0E="));
        let user = parsed.auth_infos.first().expect("user");
        assert_eq!(user.name, "system:kube-controller-manager");
        let auth = user.auth_info.as_ref().expect("auth info");
        assert_eq!(auth.client_certificate_data.as_deref(), Some("Q0VSVA=="));
    }
}
