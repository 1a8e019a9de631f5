//! Tests of certificate pinning: strangers and impostors are refused, a pin set follows
//! its changes.

use rustls::AlertDescription;

use super::{TLS12_ONLY, TLS13_ONLY, assert_not_pinned, assert_peer_alert, handshake, identity};
use crate::tls::pins::Role;
use crate::tls::{
    PinSet, client_config, client_config_any, client_config_with_versions, server_config,
    server_config_any,
};

#[tokio::test]
async fn server_rejects_client_with_unrelated_identity() {
    for versions in [TLS12_ONLY, TLS13_ONLY] {
        let (plugin, host, stranger) = (identity(), identity(), identity());
        let server = server_config(&plugin, host.cert_der()).expect("server config");
        // The stranger pins the right server, but presents its own certificate.
        let client = client_config_with_versions(&stranger, plugin.cert_der(), versions)
            .expect("client config");
        let (server_result, client_result) = handshake(server, client).await;
        let err = server_result.expect_err("server must reject the stranger");
        assert_not_pinned(&err, Role::Client);
        assert_peer_alert(client_result, AlertDescription::CertificateUnknown).await;
    }
}

#[tokio::test]
async fn client_rejects_server_with_unpinned_cert() {
    for versions in [TLS12_ONLY, TLS13_ONLY] {
        let (plugin, host, impostor) = (identity(), identity(), identity());
        // The impostor serves its own certificate and would accept the host.
        let server = server_config(&impostor, host.cert_der()).expect("server config");
        let client =
            client_config_with_versions(&host, plugin.cert_der(), versions).expect("client config");
        let (server_result, client_result) = handshake(server, client).await;
        let err = client_result.expect_err("client must reject the impostor");
        assert_not_pinned(&err, Role::Server);
        assert_peer_alert(server_result, AlertDescription::CertificateUnknown).await;
    }
}

#[tokio::test]
async fn pin_set_accepts_any_member_and_follows_changes() {
    let (a, b, host) = (identity(), identity(), identity());
    let pins = PinSet::default();
    pins.insert("a", a.cert_der()).expect("pin a");
    pins.insert("b", b.cert_der()).expect("pin b");
    let client = client_config_any(&host, &pins).expect("client config");
    for plugin in [&a, &b] {
        let server = server_config(plugin, host.cert_der()).expect("server config");
        let (server_result, client_result) = handshake(server, client.clone()).await;
        server_result.expect("server side");
        client_result.expect("a pinned replica is accepted");
    }
    pins.remove("b");
    let server = server_config(&b, host.cert_der()).expect("server config");
    let (_, client_result) = handshake(server, client.clone()).await;
    let err = client_result.expect_err("a removed pin is refused");
    assert_not_pinned(&err, Role::Server);
    assert!(
        err.to_string().contains(&a.fingerprint()),
        "the message lists what is pinned: {err}"
    );
    assert!(pins.insert("c", b"not a certificate").is_err());

    let server_side = server_config_any(&a, &pins).expect("server config");
    pins.insert("host", host.cert_der()).expect("pin host");
    let (server_result, client_result) = handshake(
        server_side,
        client_config(&host, a.cert_der()).expect("client"),
    )
    .await;
    server_result.expect("the server accepts a client pinned later");
    client_result.expect("client side");
}
