//! Self-contained kubeconfig files (certificates embedded as base64 PEM).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::pki::IssuedCert;

/// The name of the cluster, user and context in written kubeconfigs.
pub(super) const CONTEXT: &str = "intercom-envtest";

/// A kubeconfig for `server` that trusts `ca_pem` and authenticates with `client`.
pub(super) fn render(server: &str, ca_pem: &str, user: &str, client: &IssuedCert) -> String {
    let ca = STANDARD.encode(ca_pem);
    let cert = STANDARD.encode(&client.cert_pem);
    let key = STANDARD.encode(&client.key_pem);
    // Every interpolated value is a URL, base64 or a fixed name: nothing needs YAML quoting
    // except `user`, which is quoted.
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: {CONTEXT}
  cluster:
    server: {server}
    certificate-authority-data: {ca}
users:
- name: \"{user}\"
  user:
    client-certificate-data: {cert}
    client-key-data: {key}
contexts:
- name: {CONTEXT}
  context:
    cluster: {CONTEXT}
    user: \"{user}\"
    namespace: default
current-context: {CONTEXT}
"
    )
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
