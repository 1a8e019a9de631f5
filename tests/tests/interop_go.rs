//! PROTOCOL.md §10: go-plugin (v1.8.0) hosts load the Rust plugin, and the Rust host loads
//! go-plugin plugins, with the broker classic and multiplexed, AutoMTLS off and on.

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use intercom::runtime::ProcessLauncher;
use intercom::tonic::transport::Channel;
use intercom::{Client, ClientConfig, ClientError, HandshakeConfig, HandshakeError, Multiplex};
use intercom_tests::{HANDSHAKE, counter, go_fixture, host_plugins, kv, pid_running, reverse};

const COMBOS: [(bool, bool); 4] = [(false, false), (false, true), (true, false), (true, true)];

/// Runs a go-plugin host fixture with the Rust test plugin as its plugin.
async fn go_host(
    host: &str,
    plugin_var: &str,
    args: &[&str],
    mux: bool,
    mtls: bool,
    dir: &Path,
    extra: &[(&str, &str)],
) -> Output {
    let mut cmd = tokio::process::Command::new(go_fixture(host));
    cmd.args(args)
        .current_dir(dir)
        .env(
            plugin_var,
            format!("exec {}", env!("CARGO_BIN_EXE_test-plugin")),
        )
        .env("INTERCOM_FIXTURE_MUX", if mux { "1" } else { "0" })
        .env("INTERCOM_FIXTURE_MTLS", if mtls { "1" } else { "0" })
        .env_remove("INTERCOM_TEST_MODE")
        .kill_on_drop(true);
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let out = tokio::time::timeout(Duration::from_secs(30), cmd.output())
        .await
        .expect("go host must finish")
        .expect("go host runs");
    assert!(
        out.status.success(),
        "{host} {args:?} (mux={mux}, mtls={mtls}) failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[tokio::test]
async fn go_kv_host_loads_rust_plugin() {
    for (mux, mtls) in COMBOS {
        let dir = tempfile::tempdir().unwrap();
        let report = [("INTERCOM_FIXTURE_REPORT_KILL", "1")];
        go_host(
            "kv-host",
            "KV_PLUGIN",
            &["put", "hello", "world"],
            mux,
            mtls,
            dir.path(),
            &report,
        )
        .await;
        let out = go_host(
            "kv-host",
            "KV_PLUGIN",
            &["get", "hello"],
            mux,
            mtls,
            dir.path(),
            &report,
        )
        .await;
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "world\n\nWritten from plugin-rust-grpc\n",
            "mux={mux} mtls={mtls}"
        );
        // Graceful exit on Kill: no 2 s SIGKILL path.
        let stderr = String::from_utf8_lossy(&out.stderr);
        let ms: u64 = stderr
            .lines()
            .find_map(|l| {
                l.strip_prefix("kill took ")?
                    .strip_suffix("ms")?
                    .parse()
                    .ok()
            })
            .unwrap_or_else(|| panic!("no kill report in {stderr}"));
        assert!(
            ms < 1500,
            "the Rust plugin took {ms} ms to exit on Kill (mux={mux}, mtls={mtls})"
        );
        assert!(
            !stderr.contains("plugin failed to exit gracefully"),
            "{stderr}"
        );
    }
}

#[tokio::test]
async fn go_counter_host_calls_back_through_rust_plugin() {
    for (mux, mtls) in COMBOS {
        let dir = tempfile::tempdir().unwrap();
        for _ in 0..2 {
            go_host(
                "counter-host",
                "COUNTER_PLUGIN",
                &["put", "x", "1"],
                mux,
                mtls,
                dir.path(),
                &[],
            )
            .await;
        }
        let out = go_host(
            "counter-host",
            "COUNTER_PLUGIN",
            &["get", "x"],
            mux,
            mtls,
            dir.path(),
            &[],
        )
        .await;
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "2",
            "mux={mux} mtls={mtls}"
        );
    }
}

#[tokio::test]
async fn go_reverse_host_dials_rust_plugin_broker() {
    for (mux, mtls) in COMBOS {
        let dir = tempfile::tempdir().unwrap();
        let out = go_host(
            "reverse-host",
            "REVERSE_PLUGIN",
            &["add", "2", "3"],
            mux,
            mtls,
            dir.path(),
            &[],
        )
        .await;
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "5",
            "mux={mux} mtls={mtls}"
        );
    }
}

#[tokio::test]
async fn go_host_receives_rust_plugin_stdio() {
    let dir = tempfile::tempdir().unwrap();
    let out = go_host(
        "kv-host",
        "KV_PLUGIN",
        &["put", "stdio", "v"],
        true,
        true,
        dir.path(),
        &[
            ("INTERCOM_FIXTURE_KILL_DELAY_MS", "300"),
            ("INTERCOM_FIXTURE_LOG", "info"),
        ],
    )
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The Go host writes its own log lines to the same stderr, so only the order of the
    // synced lines among themselves is fixed.
    let synced = |text: &str, prefix: &str| -> Vec<String> {
        text.lines()
            .filter(|l| l.starts_with(prefix))
            .map(str::to_string)
            .collect()
    };
    assert_eq!(
        synced(&stdout, "out-"),
        ["out-1", "out-2", "out-3"],
        "stdout: {stdout}"
    );
    assert_eq!(
        synced(&stderr, "err-"),
        ["err-1", "err-2", "err-3"],
        "stderr: {stderr}"
    );
    // Our hclog JSON lines are re-levelled by the Go host's logger.
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("[INFO]") && l.contains("log-1")),
        "stderr: {stderr}"
    );
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("[WARN]") && l.contains("log-warn")),
        "stderr: {stderr}"
    );
}

fn go_plugin_client(name: &str, dir: &Path, mux: bool, mtls: bool) -> Client {
    Client::new(
        ClientConfig::new(
            HANDSHAKE,
            host_plugins(),
            ProcessLauncher::new(go_fixture(name)).current_dir(dir),
        )
        .multiplex(if mux {
            Multiplex::Required
        } else {
            Multiplex::Off
        })
        .auto_mtls(mtls),
    )
}

#[tokio::test]
async fn rust_host_loads_go_kv_plugin() {
    for (mux, mtls) in COMBOS {
        let dir = tempfile::tempdir().unwrap();
        let client = go_plugin_client("kv-plugin", dir.path(), mux, mtls);
        let protocol = client.connect().await.unwrap();
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
        assert_eq!(
            value, b"world\n\nWritten from plugin-go-grpc",
            "mux={mux} mtls={mtls}"
        );
        let pid: u32 = client.id().unwrap().parse().unwrap();
        let started = Instant::now();
        client.kill().await;
        assert!(
            started.elapsed() < Duration::from_millis(1500),
            "Go plugin did not exit gracefully"
        );
        assert!(!pid_running(pid));
    }
}

#[tokio::test]
async fn rust_host_serves_callback_to_go_counter_plugin() {
    for (mux, mtls) in COMBOS {
        let dir = tempfile::tempdir().unwrap();
        let client = go_plugin_client("counter-plugin", dir.path(), mux, mtls);
        let protocol = client.connect().await.unwrap();
        let mut counter: counter::counter_client::CounterClient<Channel> =
            protocol.dispense("counter").unwrap();
        for _ in 0..2 {
            intercom_tests::put_with_callback(protocol.broker(), &mut counter, "x", 1)
                .await
                .unwrap_or_else(|e| panic!("put (mux={mux} mtls={mtls}): {e}"));
        }
        let v = counter
            .get(counter::GetRequest { key: "x".into() })
            .await
            .unwrap()
            .into_inner()
            .value;
        assert_eq!(v, 2, "mux={mux} mtls={mtls}");
        client.kill().await;
    }
}

#[tokio::test]
async fn rust_host_dials_go_plugin_broker() {
    for (mux, mtls) in COMBOS {
        let dir = tempfile::tempdir().unwrap();
        let client = go_plugin_client("reverse-plugin", dir.path(), mux, mtls);
        let protocol = client.connect().await.unwrap();
        let mut spawner: reverse::spawner_client::SpawnerClient<Channel> =
            protocol.dispense("reverse").unwrap();
        let id = spawner
            .spawn(reverse::SpawnRequest {})
            .await
            .unwrap()
            .into_inner()
            .broker_id;
        let channel = protocol
            .broker()
            .dial(id)
            .await
            .unwrap_or_else(|e| panic!("dial (mux={mux} mtls={mtls}): {e}"));
        let r = reverse::adder_client::AdderClient::new(channel)
            .add(reverse::AddRequest { a: 20, b: 22 })
            .await
            .unwrap()
            .into_inner()
            .r;
        assert_eq!(r, 42, "mux={mux} mtls={mtls}");
        client.kill().await;
    }
}

#[tokio::test]
async fn go_plugin_rejects_wrong_cookie_and_version() {
    let dir = tempfile::tempdir().unwrap();
    let wrong_cookie = Client::new(ClientConfig::new(
        HandshakeConfig::new(1, "BASIC_PLUGIN", "nope"),
        host_plugins(),
        ProcessLauncher::new(go_fixture("kv-plugin")).current_dir(dir.path()),
    ));
    match wrong_cookie.start().await {
        Err(ClientError::ExitedBeforeHandshake { status, stderr, .. }) => {
            assert_eq!(status.code, Some(1));
            assert!(stderr.contains("This binary is a plugin"), "{stderr}");
        }
        other => panic!("unexpected: {other:?}"),
    }
    let wrong_version = Client::new(ClientConfig::new(
        HandshakeConfig::new(2, "BASIC_PLUGIN", "hello"),
        host_plugins(),
        ProcessLauncher::new(go_fixture("kv-plugin")).current_dir(dir.path()),
    ));
    match wrong_version.start().await {
        Err(ClientError::Handshake {
            source: HandshakeError::IncompatibleAppVersion { plugin, host },
            ..
        }) => {
            assert_eq!(plugin, 1);
            assert_eq!(host, vec![2]);
        }
        other => panic!("unexpected: {other:?}"),
    }
}

/// Over tonic's 4 MiB default, under go-plugin's host limit (`math.MaxInt32`).
const BIG: usize = 5 << 20;

/// A working directory whose `kv_big` is `BIG` bytes: the KV plugins' `Get` returns
/// `kv_<key>` from their working directory.
fn dir_with_big_value() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("kv_big"), vec![b'x'; BIG]).unwrap();
    dir
}

#[tokio::test]
async fn a_rust_host_takes_a_reply_over_4_mib_from_a_go_plugin() {
    let dir = dir_with_big_value();
    for (mux, mtls) in [(false, false), (true, true)] {
        // intercom-build's glue, as users get it.
        let plugins = intercom::PluginSet::new().with(kv::KV_PLUGIN_NAME, kv::KvPlugin::client());
        let client = Client::new(
            ClientConfig::new(
                HANDSHAKE,
                plugins,
                ProcessLauncher::new(go_fixture("kv-plugin")).current_dir(dir.path()),
            )
            .multiplex(if mux {
                Multiplex::Required
            } else {
                Multiplex::Off
            })
            .auto_mtls(mtls),
        );
        let protocol = client.connect().await.unwrap();
        let mut kv: kv::kv_client::KvClient<Channel> =
            protocol.dispense(kv::KV_PLUGIN_NAME).unwrap();
        let reply = kv
            .get(kv::GetRequest { key: "big".into() })
            .await
            .unwrap_or_else(|e| panic!("mux={mux}: a {BIG}-byte reply: {e}"));
        assert_eq!(reply.into_inner().value.len(), BIG, "mux={mux}");
        client.kill().await;
    }
}

#[tokio::test]
async fn a_go_host_takes_a_reply_over_4_mib_from_a_rust_plugin() {
    let dir = dir_with_big_value();
    for (mux, mtls) in [(false, false), (true, true)] {
        let out = go_host(
            "kv-host",
            "KV_PLUGIN",
            &["get", "big"],
            mux,
            mtls,
            dir.path(),
            &[],
        )
        .await;
        // kv-host prints the value and a newline.
        assert_eq!(out.stdout.len(), BIG + 1, "mux={mux}");
    }
}
