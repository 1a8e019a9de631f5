//! A plugin that runs out of file descriptors (`EMFILE`) keeps accepting once fds free
//! up: accept failures pause the accept loop, they never end it.

use std::time::Duration;

use intercom::runtime::ProcessLauncher;
use intercom::{Client, ClientConfig, Multiplex};
use intercom_tests::{HANDSHAKE, host_plugins, kv};
use tokio::net::UnixStream;

type Kv = kv::kv_client::KvClient<intercom::tonic::transport::Channel>;

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

fn fd_limit(pid: u32) -> usize {
    std::fs::read_to_string(format!("/proc/{pid}/limits"))
        .ok()
        .and_then(|limits| {
            let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
            line.split_whitespace().nth(3)?.parse().ok()
        })
        .expect("the plugin's soft RLIMIT_NOFILE")
}

async fn put(kv: &mut Kv, key: &str) {
    kv.put(kv::PutRequest {
        key: key.into(),
        value: b"v".to_vec(),
    })
    .await
    .unwrap_or_else(|e| panic!("put {key}: {e}"));
}

#[tokio::test]
async fn a_plugin_out_of_fds_accepts_again_once_they_are_free() {
    let dir = tempfile::tempdir().unwrap();
    // Classic and plaintext, so a second host can reattach over a new connection.
    let first = Client::new(
        ClientConfig::new(
            HANDSHAKE,
            host_plugins(),
            ProcessLauncher::new(env!("CARGO_BIN_EXE_test-plugin"))
                .env("INTERCOM_TEST_MODE", "fd-limit")
                .current_dir(dir.path()),
        )
        .auto_mtls(false)
        .multiplex(Multiplex::Off),
    );
    let protocol = first.connect().await.unwrap();
    let mut kv: Kv = protocol.dispense("kv_grpc").unwrap();
    put(&mut kv, "before").await;
    let reattach = first.reattach_config().await.expect("reattachable");
    let pid = reattach.pid.expect("pid");

    // Strangers fill the plugin's fd table; more wait in the listen backlog.
    let mut strangers = Vec::new();
    for _ in 0..64 {
        strangers.push(UnixStream::connect(&reattach.address).await.unwrap());
    }
    let limit = fd_limit(pid);
    let full = async {
        while open_fds(pid) < limit {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), full)
        .await
        .unwrap_or_else(|_| {
            panic!(
                "the plugin's fd table never filled ({} of {limit})",
                open_fds(pid)
            )
        });
    // Accepts fail with EMFILE now (so would the plugin's file writes); the established
    // host connection still answers.
    tokio::time::sleep(Duration::from_millis(300)).await;
    protocol.ping().await.expect("ping while out of fds");

    drop(strangers);
    // A new connection is accepted: the accept loop survived.
    let second = Client::new(ClientConfig::new(HANDSHAKE, host_plugins(), reattach));
    let protocol2 = tokio::time::timeout(Duration::from_secs(20), second.connect())
        .await
        .expect("a new host connection is accepted after EMFILE")
        .expect("reattach after EMFILE");
    // A connected socket proves nothing (the kernel queues it unaccepted): a call must
    // be answered over it.
    let mut kv2: Kv = protocol2.dispense("kv_grpc").unwrap();
    tokio::time::timeout(Duration::from_secs(20), put(&mut kv2, "after"))
        .await
        .expect("a call over a connection made after EMFILE is answered");
    assert!(intercom_tests::pid_running(pid));
    second.kill().await;
    first.kill().await;
}
