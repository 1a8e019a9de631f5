//! A plugin told to listen on every address (`INTERCOM_LISTEN_ADDR=0.0.0.0:<port>`, what
//! generated Kubernetes pods ask for) announces `INTERCOM_ADVERTISE_ADDR` in its handshake
//! and accepts on its loopback, where a container runtime's port-forward dials.

use std::time::Duration;

use intercom::handshake::{Handshake, Network};
use intercom_tests::kv;
use tokio::process::{Child, Command};

/// Hang guard for the whole test.
const TEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A port free on every address right now.
fn free_port() -> u16 {
    let probe = std::net::TcpListener::bind("0.0.0.0:0").expect("bind a probe port");
    probe.local_addr().expect("probe address").port()
}

/// The test plugin with `env` (no AutoMTLS, classic broker), in `dir`; returns it and its
/// handshake line.
async fn plugin(dir: &std::path::Path, env: &[(&str, &str)]) -> (Child, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_test-plugin"));
    cmd.env("BASIC_PLUGIN", "hello")
        .env("PLUGIN_PROTOCOL_VERSIONS", "1")
        .env_remove("INTERCOM_TEST_MODE")
        .env_remove("PLUGIN_CLIENT_CERT")
        .env_remove("PLUGIN_MULTIPLEX_GRPC")
        .current_dir(dir);
    for (k, v) in env {
        cmd.env(k, v);
    }
    intercom_tests::spawn_and_read_line(cmd).await
}

#[tokio::test]
async fn a_plugin_on_0_0_0_0_announces_its_advertise_addr_and_accepts_on_loopback() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let listen = format!("0.0.0.0:{port}");
        // Any specific address: the host dials it, the plugin only prints it.
        let advertise = format!("10.213.250.7:{port}");
        let (mut child, line) = plugin(
            dir.path(),
            &[
                ("INTERCOM_LISTEN_ADDR", &listen),
                ("INTERCOM_ADVERTISE_ADDR", &advertise),
            ],
        )
        .await;
        let handshake = Handshake::parse(line.trim()).expect("a handshake line");
        assert_eq!(handshake.network, Network::Tcp);
        assert_eq!(
            handshake.address, advertise,
            "the handshake announces INTERCOM_ADVERTISE_ADDR, not {listen}"
        );

        let channel =
            intercom::tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
                .unwrap()
                .connect()
                .await
                .expect("the plugin accepts on 127.0.0.1 (a port-forward's address)");
        let mut kv = kv::kv_client::KvClient::new(channel);
        kv.put(kv::PutRequest {
            key: "loopback".into(),
            value: b"reached".to_vec(),
        })
        .await
        .expect("a call over loopback");
        let got = kv
            .get(kv::GetRequest {
                key: "loopback".into(),
            })
            .await
            .expect("a call over loopback")
            .into_inner()
            .value;
        assert!(got.starts_with(b"reached"), "{got:?}");

        child.start_kill().unwrap();
        let _ = child.wait().await;
    })
    .await
    .expect("within the test timeout");
}

#[tokio::test]
async fn a_bad_advertise_addr_stops_the_plugin_before_its_handshake() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let dir = tempfile::tempdir().unwrap();
        let listen = format!("0.0.0.0:{}", free_port());
        let (mut child, line) = plugin(
            dir.path(),
            &[
                ("INTERCOM_LISTEN_ADDR", &listen),
                ("INTERCOM_ADVERTISE_ADDR", "0.0.0.0:50077"),
            ],
        )
        .await;
        assert_eq!(
            line, "",
            "no handshake with an undialable advertise address"
        );
        let status = child.wait().await.unwrap();
        assert!(!status.success(), "{status:?}");
    })
    .await
    .expect("within the test timeout");
}
