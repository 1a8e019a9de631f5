//! Tests of the server and client configs: ALPN, garbage pins, TLS 1.2 and 1.3, mutual
//! handshakes, and the client certificate the server requires.

use std::sync::Arc;

use rustls::pki_types::ServerName;
use rustls::{AlertDescription, CipherSuite, ClientConfig, ProtocolVersion};

use super::{
    TLS12_ONLY, TLS13_ONLY, assert_mutual_tls, assert_peer_alert, handshake, identity, rustls_error,
};
use crate::tls::pins::{PinnedCertVerifier, Role};
use crate::tls::provider::{KeyExchange, provider};
use crate::tls::{
    PinSet, TlsError, client_config, client_config_with_versions, server_config, server_name,
};

#[test]
fn configs_reject_garbage_pins_and_set_h2() {
    let id = identity();
    let err = server_config(&id, b"not a certificate").expect_err("garbage pin");
    assert!(
        matches!(err, TlsError::InvalidCertificate { .. }),
        "{err:?}"
    );
    let err = client_config(&id, b"").expect_err("empty pin");
    assert!(
        matches!(err, TlsError::InvalidCertificate { .. }),
        "{err:?}"
    );

    let server = server_config(&id, id.cert_der()).expect("server config");
    assert_eq!(server.alpn_protocols, [b"h2".to_vec()]);
    let client = client_config(&id, id.cert_der()).expect("client config");
    assert_eq!(client.alpn_protocols, [b"h2".to_vec()]);
    assert_eq!(server_name().to_str(), "localhost");
    assert!(matches!(server_name(), ServerName::DnsName(_)));
}

#[tokio::test]
async fn mutual_handshake_with_pinned_certs_succeeds() {
    let (plugin, host) = (identity(), identity());
    let server = server_config(&plugin, host.cert_der()).expect("server config");
    let client = client_config(&host, plugin.cert_der()).expect("client config");
    assert_mutual_tls(server, client, &plugin, &host, ProtocolVersion::TLSv1_3).await;
}

#[tokio::test]
async fn tls12_and_tls13_both_work_with_p521() {
    for (versions, expected) in [
        (TLS12_ONLY, ProtocolVersion::TLSv1_2),
        (TLS13_ONLY, ProtocolVersion::TLSv1_3),
    ] {
        let (plugin, host) = (identity(), identity());
        // The server keeps its default (1.2 + 1.3); the client restricts the version.
        let server = server_config(&plugin, host.cert_der()).expect("server config");
        let client =
            client_config_with_versions(&host, plugin.cert_der(), versions).expect("client config");
        let (server_stream, _client_stream) =
            handshake(Arc::clone(&server), Arc::clone(&client)).await;
        let suite = server_stream
            .expect("handshake succeeds")
            .get_ref()
            .1
            .negotiated_cipher_suite()
            .expect("suite negotiated")
            .suite();
        if expected == ProtocolVersion::TLSv1_2 {
            // A P-521 certificate forces an ECDHE_ECDSA suite in TLS 1.2.
            assert!(
                matches!(
                    suite,
                    CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
                        | CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
                        | CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
                ),
                "{suite:?}"
            );
        }
        assert_mutual_tls(server, client, &plugin, &host, expected).await;
    }
}

#[tokio::test]
async fn server_rejects_client_without_certificate() {
    for versions in [TLS12_ONLY, TLS13_ONLY] {
        let (plugin, host) = (identity(), identity());
        let server = server_config(&plugin, host.cert_der()).expect("server config");
        let provider = provider(KeyExchange::Local);
        let verifier = PinnedCertVerifier {
            pins: PinSet::one(plugin.cert_der()).expect("pin"),
            role: Role::Server,
            algorithms: provider.signature_verification_algorithms,
        };
        let mut client = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .expect("versions")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        client.alpn_protocols = vec![b"h2".to_vec()];
        let (server_result, client_result) = handshake(server, Arc::new(client)).await;
        let err = server_result.expect_err("server must require a client certificate");
        assert!(
            matches!(rustls_error(&err), rustls::Error::NoCertificatesPresented),
            "{err:?}"
        );
        assert_peer_alert(client_result, AlertDescription::CertificateRequired).await;
    }
}
