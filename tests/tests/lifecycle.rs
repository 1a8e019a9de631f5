//! Start, ping, dispense, call, crash, kill: the process runtime end to end with the Rust
//! test plugin.

use std::time::{Duration, Instant};

use intercom::runtime::ProcessLauncher;
use intercom::{Client, ClientConfig, ClientError, Multiplex, ReattachConfig};
use intercom_tests::{HANDSHAKE, host_plugins, kv, pid_running};

fn launcher(mode: &str, dir: &std::path::Path) -> ProcessLauncher {
    ProcessLauncher::new(env!("CARGO_BIN_EXE_test-plugin"))
        .env("INTERCOM_TEST_MODE", mode)
        .current_dir(dir)
}

fn pid_of(client: &Client) -> u32 {
    client
        .id()
        .and_then(|id| id.parse().ok())
        .expect("a started process client has a pid")
}

async fn wait_gone(pid: u32, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while pid_running(pid) {
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    true
}

#[tokio::test]
async fn ping_dispense_call_and_graceful_kill() {
    let dir = tempfile::tempdir().unwrap();
    let client = Client::new(ClientConfig::new(
        HANDSHAKE,
        host_plugins(),
        launcher("", dir.path()),
    ));
    let protocol = client.connect().await.unwrap();
    protocol.ping().await.unwrap();
    assert_eq!(client.negotiated_version().await, Some(1));
    assert!(
        protocol.broker().is_multiplexed(),
        "multiplexing is negotiated by default"
    );

    let mut kv: kv::kv_client::KvClient<intercom::tonic::transport::Channel> =
        protocol.dispense("kv_grpc").unwrap();
    kv.put(kv::PutRequest {
        key: "a".into(),
        value: b"1".to_vec(),
    })
    .await
    .unwrap();
    let got = kv.get(kv::GetRequest { key: "a".into() }).await.unwrap();
    assert!(
        got.into_inner()
            .value
            .starts_with(b"1\n\nWritten from plugin-rust-grpc")
    );

    let pid = pid_of(&client);
    assert!(pid_running(pid));
    let started = Instant::now();
    client.kill().await;
    // Graceful: well inside the 2 s grace period, so it was not SIGKILLed.
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "kill took {:?}",
        started.elapsed()
    );
    assert!(
        wait_gone(pid, Duration::from_secs(1)).await,
        "pid {pid} still running"
    );
    assert!(client.exited());
    client.kill().await; // twice is fine
    assert!(matches!(
        client.connect().await,
        Err(ClientError::Killed { .. })
    ));
}

#[tokio::test]
async fn kill_forces_a_plugin_that_ignores_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let client = Client::new(
        ClientConfig::new(HANDSHAKE, host_plugins(), launcher("linger", dir.path()))
            .kill_timeout(Duration::from_millis(500)),
    );
    client.start().await.unwrap();
    let pid = pid_of(&client);
    let started = Instant::now();
    client.kill().await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(500),
        "did not wait for a graceful exit: {took:?}"
    );
    assert!(took < Duration::from_secs(3), "forced kill took {took:?}");
    assert!(
        wait_gone(pid, Duration::from_secs(1)).await,
        "pid {pid} survived a forced kill"
    );
}

#[tokio::test]
async fn dispense_of_unknown_name_errors() {
    let dir = tempfile::tempdir().unwrap();
    let client = Client::new(ClientConfig::new(
        HANDSHAKE,
        host_plugins(),
        launcher("", dir.path()),
    ));
    let protocol = client.connect().await.unwrap();
    let err = protocol.dispense::<()>("nope").unwrap_err();
    assert!(
        matches!(&err, ClientError::UnknownPlugin { name, available } if name == "nope" && available.contains(&"kv_grpc".to_string())),
        "{err:?}"
    );
    let err = protocol.dispense::<String>("kv_grpc").unwrap_err();
    assert!(matches!(err, ClientError::DispenseType { .. }), "{err:?}");
    client.kill().await;
}

#[tokio::test]
async fn crash_mid_call_errors_within_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let client = Client::new(ClientConfig::new(
        HANDSHAKE,
        host_plugins(),
        launcher("", dir.path()),
    ));
    let mut kv: kv::kv_client::KvClient<intercom::tonic::transport::Channel> =
        client.connect().await.unwrap().dispense("kv_grpc").unwrap();
    let started = Instant::now();
    let res = tokio::time::timeout(
        Duration::from_secs(5),
        kv.get(kv::GetRequest {
            key: "crash".into(),
        }),
    )
    .await
    .expect("the call must not hang");
    assert!(res.is_err(), "a crashed plugin cannot answer");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "took {:?}",
        started.elapsed()
    );
    let deadline = Instant::now() + Duration::from_secs(2);
    while !client.exited() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(client.exited());
    // Calls on the dead plugin fail promptly too.
    let started = Instant::now();
    assert!(kv.get(kv::GetRequest { key: "a".into() }).await.is_err());
    assert!(started.elapsed() < Duration::from_secs(1));
    client.kill().await;
}

/// A started client whose plugin another host can reattach to (classic broker, plaintext).
async fn reattachable_plugin(dir: &std::path::Path) -> Client {
    let client = Client::new(
        ClientConfig::new(HANDSHAKE, host_plugins(), launcher("", dir))
            .auto_mtls(false)
            .multiplex(Multiplex::Off),
    );
    client.start().await.unwrap();
    client
}

#[tokio::test]
async fn reattach_refuses_a_pid_that_is_not_the_plugin_and_signals_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let first = reattachable_plugin(dir.path()).await;
    let mut re = first.reattach_config().await.expect("reattachable");
    let plugin = re.pid.expect("pid");
    // The plugin's pid, reused by a stranger: here, another process of ours.
    let mut stranger = tokio::process::Command::new("sleep")
        .arg("30")
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stranger_pid = stranger.id().unwrap();
    re.pid = Some(stranger_pid);
    let second = Client::new(ClientConfig::new(HANDSHAKE, host_plugins(), re));
    match second.start().await {
        Err(ClientError::ReattachPidMismatch { pid, listener, .. }) => {
            assert_eq!((pid, listener), (stranger_pid, plugin));
        }
        other => panic!("expected ReattachPidMismatch, got {other:?}"),
    }
    second.kill().await;
    assert!(pid_running(stranger_pid), "the stranger was not signalled");
    assert!(pid_running(plugin), "the plugin was not signalled");
    stranger.kill().await.unwrap();
    first.kill().await;
}

#[tokio::test]
async fn reattach_to_a_running_plugin() {
    let dir = tempfile::tempdir().unwrap();
    let first = reattachable_plugin(dir.path()).await;
    let re = first
        .reattach_config()
        .await
        .expect("classic, plaintext: reattachable");
    let pid = re.pid.expect("pid");

    let second = Client::new(ClientConfig::new(HANDSHAKE, host_plugins(), re.clone()));
    let protocol = second.connect().await.unwrap();
    protocol.ping().await.unwrap();
    let mut kv: kv::kv_client::KvClient<intercom::tonic::transport::Channel> =
        protocol.dispense("kv_grpc").unwrap();
    kv.put(kv::PutRequest {
        key: "r".into(),
        value: b"x".to_vec(),
    })
    .await
    .unwrap();

    // A reattached client kills the process it attached to.
    second.kill().await;
    assert!(wait_gone(pid, Duration::from_secs(3)).await);
    first.kill().await;

    // Reattaching to a pid that is gone is a clear error.
    let gone = Client::new(ClientConfig::new(HANDSHAKE, host_plugins(), re));
    assert!(matches!(
        gone.start().await,
        Err(ClientError::ReattachNotFound { .. })
    ));
    let _ = ReattachConfig::new(1, intercom::handshake::Network::Unix, "/x");
}

/// go-plugin's `ReattachConfig.Test`: a host in test mode disconnects from the plugin it
/// reattached to and never stops it; the host that launched it still can.
#[tokio::test]
async fn a_reattached_client_in_test_mode_only_disconnects() {
    let dir = tempfile::tempdir().unwrap();
    let first = reattachable_plugin(dir.path()).await;
    let mut re = first.reattach_config().await.expect("reattachable");
    let pid = re.pid.expect("pid");
    re.test = true;
    let second = Client::new(ClientConfig::new(HANDSHAKE, host_plugins(), re));
    second.connect().await.unwrap().ping().await.unwrap();
    second.kill().await;
    assert!(
        !wait_gone(pid, Duration::from_millis(500)).await,
        "a test-mode reattach left the plugin running"
    );
    first.connect().await.unwrap().ping().await.unwrap();
    first.kill().await;
    assert!(wait_gone(pid, Duration::from_secs(3)).await);
}

#[tokio::test]
async fn cleanup_clients_kills_managed_clients() {
    let dir = tempfile::tempdir().unwrap();
    let mut pids = Vec::new();
    let mut clients = Vec::new();
    for _ in 0..2 {
        let c = Client::new(
            ClientConfig::new(HANDSHAKE, host_plugins(), launcher("", dir.path())).managed(true),
        );
        c.start().await.unwrap();
        pids.push(pid_of(&c));
        clients.push(c);
    }
    intercom::cleanup_clients().await;
    for pid in pids {
        assert!(wait_gone(pid, Duration::from_secs(1)).await, "pid {pid}");
    }
    assert!(clients.iter().all(Client::exited));
}

#[tokio::test]
async fn dropping_a_client_kills_its_plugin() {
    let dir = tempfile::tempdir().unwrap();
    let client = Client::new(ClientConfig::new(
        HANDSHAKE,
        host_plugins(),
        launcher("", dir.path()),
    ));
    client.start().await.unwrap();
    let pid = pid_of(&client);
    drop(client);
    assert!(
        wait_gone(pid, Duration::from_secs(3)).await,
        "pid {pid} outlived its Client"
    );
}

/// `start`, `client` and `kill` can run in a spawned task (their futures are `Send`):
/// before, a `&ClientConfig` holding the non-`Sync` stdio writers was kept across an
/// await, and `tokio::spawn(client.start())` did not compile.
#[test]
fn client_futures_are_send() {
    fn send<T: Send>(_: T) {}
    let client = Client::new(
        ClientConfig::new(HANDSHAKE, host_plugins(), ProcessLauncher::new("unused"))
            .sync_stdout(tokio::io::sink())
            .sync_stderr(tokio::io::sink()),
    );
    send(client.start());
    send(client.connect());
    send(client.kill());
}

/// The deprecated `Client::client()` is `connect()`: the same started plugin, the same
/// connection, no second launch.
#[tokio::test]
#[allow(deprecated)]
async fn the_deprecated_client_alias_returns_the_connection_connect_made() {
    let dir = tempfile::tempdir().unwrap();
    let client = Client::new(ClientConfig::new(
        HANDSHAKE,
        host_plugins(),
        launcher("", dir.path()),
    ));
    let connection = client.connect().await.unwrap();
    let pid = client.id();
    let old: intercom::ClientProtocol = client.client().await.unwrap();
    assert_eq!(old.address(), connection.address());
    assert_eq!(client.id(), pid);
    old.ping().await.unwrap();
    client.kill().await;
}
