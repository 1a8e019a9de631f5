//! PROTOCOL.md §10.3: a grpcio plugin (no broker, controller or stdio services, no TLS,
//! five-field handshake) works with the Rust host.

use std::time::{Duration, Instant};

use intercom::runtime::ProcessLauncher;
use intercom::tonic::transport::Channel;
use intercom::{Client, ClientConfig, ClientError, HandshakeError, Multiplex};
use intercom_tests::{HANDSHAKE, host_plugins, kv, pid_running, python, python_kv_plugin};

fn python_client(dir: &std::path::Path, multiplex: Multiplex) -> Client {
    Client::new(
        ClientConfig::new(
            HANDSHAKE,
            host_plugins(),
            ProcessLauncher::new(python())
                .arg(python_kv_plugin())
                .current_dir(dir),
        )
        .multiplex(multiplex)
        // go-plugin's Python plugin cannot do AutoMTLS.
        .auto_mtls(false)
        .kill_timeout(Duration::from_millis(500)),
    )
}

/// AutoMTLS fails closed: a host that asks for it refuses a plugin that announces no
/// certificate (as go-plugin's does), and leaves no process behind.
#[tokio::test]
async fn automtls_host_refuses_a_plugin_without_a_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let client = Client::new(
        ClientConfig::new(
            HANDSHAKE,
            host_plugins(),
            ProcessLauncher::new(python())
                .arg(python_kv_plugin())
                .current_dir(dir.path()),
        )
        .kill_timeout(Duration::from_millis(500)),
    );
    let err = client
        .start()
        .await
        .expect_err("plaintext must not be chosen silently");
    match &err {
        ClientError::AutoMtlsUnsupported { name } => assert_eq!(name, "python"),
        other => panic!("unexpected: {other:?}"),
    }
    let message = err.to_string();
    assert!(message.contains("auto_mtls(false)"), "{message}");
    assert!(client.exited(), "the refused plugin must be stopped");
}

#[tokio::test]
async fn rust_host_loads_python_plugin() {
    let dir = tempfile::tempdir().unwrap();
    // Multiplexing requested (the default); the plugin does not support it.
    let client = python_client(dir.path(), Multiplex::Auto);
    let protocol = client.connect().await.unwrap();
    assert!(!protocol.broker().is_multiplexed());
    protocol.ping().await.unwrap();
    let mut kv: kv::kv_client::KvClient<Channel> = protocol.dispense("kv_grpc").unwrap();
    kv.put(kv::PutRequest {
        key: "hello".into(),
        value: b"world".to_vec(),
    })
    .await
    .unwrap();
    let value = kv
        .get(kv::GetRequest {
            key: "hello".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .value;
    assert_eq!(value, b"world\n\nWritten from plugin-python");
    let pid: u32 = client.id().unwrap().parse().unwrap();
    // No controller: shutdown is Unimplemented, so kill falls back to SIGKILL after the grace.
    let started = Instant::now();
    client.kill().await;
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(!pid_running(pid), "python plugin left running");
}

#[tokio::test]
async fn required_multiplexing_fails_against_python() {
    let dir = tempfile::tempdir().unwrap();
    let client = python_client(dir.path(), Multiplex::Required);
    match client.start().await {
        Err(ClientError::Handshake {
            source: HandshakeError::MultiplexUnsupported { .. },
            ..
        }) => {}
        other => panic!("unexpected: {other:?}"),
    }
}
