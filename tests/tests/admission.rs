//! Strangers on the plugin's socket: whatever another local process sends, the host's
//! session and the plugin survive (issue: one `0x00` byte used to end both).

use std::time::Duration;

use futures::StreamExt;
use intercom::__testing::{Identity, client_config, server_name};
use intercom::handshake::Network;
use intercom::runtime::ProcessLauncher;
use intercom::{Client, ClientConfig, Connection, Multiplex};
use intercom_tests::kv::kv_client::KvClient;
use intercom_tests::kv::{GetRequest, PutRequest};
use intercom_tests::{HANDSHAKE, host_plugins};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

async fn launch(dir: &std::path::Path, auto_mtls: bool) -> (Client, Connection, String) {
    let client = Client::new(
        ClientConfig::new(
            HANDSHAKE,
            host_plugins(),
            ProcessLauncher::new(env!("CARGO_BIN_EXE_test-plugin")).current_dir(dir),
        )
        .multiplex(Multiplex::Required)
        .auto_mtls(auto_mtls),
    );
    let protocol = client.connect().await.expect("the plugin starts");
    let (network, address) = protocol.address();
    assert_eq!(network, Network::Unix);
    let address = address.to_string();
    (client, protocol, address)
}

/// One round of host traffic: a put, a get and a broker callback; returns how many of the
/// three calls failed.
async fn host_calls(protocol: &Connection, round: usize) -> usize {
    let mut kv = protocol
        .dispense::<KvClient<intercom::tonic::transport::Channel>>("kv_grpc")
        .unwrap();
    let key = format!("k{round}");
    let mut failed = 0;
    if let Err(status) = kv
        .put(PutRequest {
            key: key.clone(),
            value: vec![1, 2, 3],
        })
        .await
    {
        eprintln!("round {round}: put failed: {status}");
        failed += 1;
    }
    match kv.get(GetRequest { key }).await {
        Ok(resp) if resp.get_ref().value.is_empty() => {
            eprintln!("round {round}: get returned nothing");
            failed += 1;
        }
        Ok(_) => {}
        Err(status) => {
            eprintln!("round {round}: get failed: {status}");
            failed += 1;
        }
    }
    if let Err(err) = protocol.ping().await {
        eprintln!("round {round}: ping failed: {err}");
        failed += 1;
    }
    failed
}

/// A stranger that opens a real yamux session and sends a TLS ClientHello with a
/// certificate the plugin was never given, on the session's first stream.
async fn rogue_yamux_tls(address: &str, plugin_cert: &[u8]) {
    let Ok(socket) = UnixStream::connect(address).await else {
        return;
    };
    let mut session = tokio_yamux::Session::new_client(socket, tokio_yamux::Config::default());
    let mut control = session.control();
    let driver = tokio::spawn(async move { while session.next().await.is_some() {} });
    if let Ok(stream) = control.open_stream().await {
        let rogue = Identity::generate().unwrap();
        let config = client_config(&rogue, plugin_cert).unwrap();
        // With TLS 1.3 the client finishes its side before the server has checked the
        // client certificate; the refusal shows on the first read.
        let refused = tokio::time::timeout(Duration::from_secs(2), async {
            let connector = tokio_rustls::TlsConnector::from(config);
            let Ok(mut tls) = connector.connect(server_name(), stream).await else {
                return true;
            };
            let _ = tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await;
            let _ = tls.flush().await;
            let mut buf = [0u8; 64];
            !matches!(tls.read(&mut buf).await, Ok(n) if n > 0)
        })
        .await;
        // (A stranger refused before its first stream may instead see its yamux
        // stream hang: this client library does not fail streams of a dead session.)
        assert_ne!(
            refused,
            Ok(false),
            "a certificate the plugin was not given must never be served"
        );
    }
    driver.abort();
}

/// A stranger that opens a plain yamux session with one stream and hangs up.
async fn plain_yamux_session(address: &str) {
    let Ok(socket) = UnixStream::connect(address).await else {
        return;
    };
    let mut session = tokio_yamux::Session::new_client(socket, tokio_yamux::Config::default());
    let mut control = session.control();
    let driver = tokio::spawn(async move { while session.next().await.is_some() {} });
    if let Ok(mut stream) = control.open_stream().await {
        let _ = stream.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await;
        let _ = stream.flush().await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    driver.abort();
}

/// Sends `bytes` on a fresh connection and hangs up.
async fn send_and_close(address: &str, bytes: &[u8]) {
    if let Ok(mut s) = UnixStream::connect(address).await {
        let _ = s.write_all(bytes).await;
        let _ = s.flush().await;
    }
}

#[tokio::test]
async fn strangers_on_the_socket_never_disturb_the_host_session() {
    let dir = tempfile::tempdir().unwrap();
    let (client, protocol, address) = launch(dir.path(), true).await;
    let plugin_cert = protocol.plugin_certificate().unwrap().to_vec();

    let mut failed = 0;
    let mut held = Vec::new();
    for round in 0..30 {
        if round == 15 {
            // Slowloris: more connections than may be unproven at once, each sending the
            // yamux first byte and then nothing, held open for the rest of the test.
            for _ in 0..40 {
                let mut s = UnixStream::connect(&address).await.unwrap();
                s.write_all(&[0x00]).await.unwrap();
                held.push(s);
            }
        }
        match round % 5 {
            0 => send_and_close(&address, &[0x00]).await,
            1 => send_and_close(&address, &[0x00, 0x01, 0x00, 0x01, 0xff, 0xff, 0xff, 0xff]).await,
            2 => rogue_yamux_tls(&address, &plugin_cert).await,
            3 => send_and_close(&address, &[0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3]).await,
            _ => send_and_close(&address, b"GET / HTTP/1.1\r\n\r\n").await,
        }
        failed += host_calls(&protocol, round).await;
    }
    drop(held);
    // Whatever the strangers' connections did when they ended must not end the plugin.
    tokio::time::sleep(Duration::from_millis(500)).await;
    failed += host_calls(&protocol, 30).await;
    assert_eq!(
        failed, 0,
        "host calls failed while strangers were connected"
    );
    assert!(!client.exited(), "the plugin must outlive the strangers");
    let mut counter = protocol
        .dispense::<intercom_tests::counter::counter_client::CounterClient<_>>("counter")
        .unwrap();
    intercom_tests::put_with_callback(protocol.broker(), &mut counter, "after", 2)
        .await
        .expect("broker callbacks still reach the host's services");
    client.kill().await;
}

#[tokio::test]
async fn without_automtls_a_second_session_never_ends_the_plugin() {
    let dir = tempfile::tempdir().unwrap();
    let (client, protocol, address) = launch(dir.path(), false).await;
    let mut failed = 0;
    for round in 0..10 {
        if round % 2 == 0 {
            send_and_close(&address, &[0x00]).await;
        } else {
            plain_yamux_session(&address).await;
        }
        failed += host_calls(&protocol, round).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    failed += host_calls(&protocol, 10).await;
    assert_eq!(
        failed, 0,
        "host calls failed after a second session came and went"
    );
    assert!(
        !client.exited(),
        "the plugin must outlive the second session"
    );
    client.kill().await;
}
