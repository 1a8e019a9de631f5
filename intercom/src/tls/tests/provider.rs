//! Tests of the crypto provider: the key exchange groups each client offers, and rustls's
//! process-wide default provider.

use std::sync::Arc;

use rustls::ClientConfig;

use super::{handshake, identity};
use crate::tls::{PinSet, client_config, client_config_any, server_config};

#[tokio::test]
async fn local_clients_offer_os_random_groups_and_kubernetes_clients_post_quantum_first() {
    let (plugin, host) = (identity(), identity());
    let server = server_config(&plugin, host.cert_der()).expect("server config");
    let pins = PinSet::one(plugin.cert_der()).expect("pin");
    for (client, expected) in [
        (
            client_config(&host, plugin.cert_der()).expect("local client config"),
            rustls::NamedGroup::X25519,
        ),
        (
            client_config_any(&host, &pins).expect("Kubernetes client config"),
            rustls::NamedGroup::X25519MLKEM768,
        ),
    ] {
        let (server_stream, client_stream) = handshake(Arc::clone(&server), client).await;
        let server_stream = server_stream.expect("server side");
        client_stream.expect("client side");
        let group = server_stream
            .get_ref()
            .1
            .negotiated_key_exchange_group()
            .expect("a group was negotiated");
        assert_eq!(group.name(), expected);
    }
}

/// kube builds its TLS configs with `ClientConfig::builder()`, which asks rustls for the
/// process-wide default provider; with a second provider feature on in rustls (stop 23 had
/// `ring`), that panicked in every Kubernetes host. The default must stay resolvable.
#[test]
fn rustls_can_still_pick_its_process_default_provider() {
    let config = ClientConfig::builder()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    assert!(!config.crypto_provider().cipher_suites.is_empty());
    assert!(rustls::crypto::CryptoProvider::get_default().is_some());
}
