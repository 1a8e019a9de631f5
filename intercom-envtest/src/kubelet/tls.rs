//! The kubelet's TLS: a serving certificate issued by the cluster CA, and client
//! certificates (the apiserver's `kube-apiserver-kubelet-client`) verified against that CA.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

/// Why the kubelet's TLS configuration can't be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The cluster CA could not issue the serving certificate.
    #[error("failed to issue the kubelet serving certificate")]
    Issue(#[source] crate::control_plane::ControlPlaneError),
    /// A certificate or key PEM doesn't parse.
    #[error("failed to parse the {what} PEM")]
    Pem {
        /// Which PEM.
        what: &'static str,
        /// The parse error.
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    /// rustls rejected the material.
    #[error("failed to build the kubelet TLS configuration")]
    Rustls(#[source] rustls::Error),
    /// The client verifier couldn't be built from the CA.
    #[error("failed to build the client certificate verifier from the cluster CA")]
    Verifier(#[source] rustls::server::VerifierBuilderError),
}

/// The server config: `cert_pem`/`key_pem` as serving certificate, optional client
/// certificates verified against `ca_cert_pem`, HTTP/1.1 only (the apiserver proxies
/// port-forward upgrades over HTTP/1.1).
pub(crate) fn server_config(
    ca_cert_pem: &str,
    cert_pem: &str,
    key_pem: &str,
) -> Result<rustls::ServerConfig, TlsError> {
    let pem = |what| move |source| TlsError::Pem { what, source };
    let ca = CertificateDer::from_pem_slice(ca_cert_pem.as_bytes())
        .map_err(pem("cluster CA certificate"))?;
    let cert =
        CertificateDer::from_pem_slice(cert_pem.as_bytes()).map_err(pem("serving certificate"))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(pem("serving key"))?;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).map_err(TlsError::Rustls)?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(TlsError::Verifier)?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Rustls)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![cert, ca], key)
        .map_err(TlsError::Rustls)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

    #[test]
    fn builds_from_ca_issued_material() {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.distinguished_name.push(DnType::CommonName, "test-ca");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca, ca_key);
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        server_config(&ca_cert.pem(), &cert.pem(), &key.serialize_pem()).unwrap();
        assert!(server_config("nope", &cert.pem(), &key.serialize_pem()).is_err());
    }
}
