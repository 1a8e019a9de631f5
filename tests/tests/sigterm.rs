//! SIGTERM is a graceful shutdown: a plugin stops serving, removes its socket directory
//! and exits 0, also as PID 1 (a container's entrypoint), where the kernel does not apply
//! SIGTERM's default action and only a handler stops the process. Without it every pod
//! deletion waits out the termination grace period.

use std::path::Path;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

/// How long a plugin may take to exit after SIGTERM (a container's grace period is 30 s).
const EXIT_WITHIN: Duration = Duration::from_secs(5);

/// Hang guard for the whole test.
const TEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Starts `program args…` running the test plugin with its socket in `sockets` (and
/// `env`), and waits for the handshake line (the plugin is serving); returns the line.
async fn start_with(
    program: &str,
    args: &[&str],
    sockets: &Path,
    env: &[(&str, &str)],
) -> (Child, String) {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env("BASIC_PLUGIN", "hello")
        .env("PLUGIN_PROTOCOL_VERSIONS", "1")
        .env("PLUGIN_UNIX_SOCKET_DIR", sockets)
        .env_remove("INTERCOM_TEST_MODE")
        .env_remove("INTERCOM_LISTEN_ADDR")
        .env_remove("INTERCOM_OUTLIVE_HOST")
        .current_dir(sockets);
    for (k, v) in env {
        cmd.env(k, v);
    }
    intercom_tests::spawn_and_read_line(cmd).await
}

/// [`start_with`] on a unix socket.
async fn start(program: &str, args: &[&str], sockets: &Path) -> Child {
    let (child, line) = start_with(program, args, sockets, &[]).await;
    assert!(line.starts_with("1|1|unix|"), "a handshake: {line:?}");
    child
}

fn sigterm(pid: u32) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(pid).expect("a pid")),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("send SIGTERM");
}

/// Waits for `child` at most [`EXIT_WITHIN`].
async fn exit_of(child: &mut Child) -> ExitStatus {
    let since = Instant::now();
    match tokio::time::timeout(EXIT_WITHIN, child.wait()).await {
        Ok(status) => status.expect("wait for the plugin"),
        Err(_) => panic!("the plugin still runs {:?} after SIGTERM", since.elapsed()),
    }
}

fn entries(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

#[tokio::test]
async fn sigterm_makes_a_plugin_exit_0_and_remove_its_socket_directory() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let sockets = tempfile::tempdir().unwrap();
        let mut plugin = start(env!("CARGO_BIN_EXE_test-plugin"), &[], sockets.path()).await;
        assert_eq!(entries(sockets.path()), 1, "the plugin's socket directory");
        sigterm(plugin.id().expect("running"));
        let status = exit_of(&mut plugin).await;
        assert_eq!(
            status.code(),
            Some(0),
            "a graceful exit, not killed by the signal: {status:?}"
        );
        assert_eq!(entries(sockets.path()), 0, "socket directory removed");
    })
    .await
    .expect("within the test timeout");
}

/// The only child of `pid` (from `/proc`).
fn only_child(pid: u32) -> u32 {
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .expect("read /proc children");
    let mut pids = children.split_whitespace();
    let child = pids.next().expect("a child").parse().expect("a pid");
    assert_eq!(pids.next(), None, "one child");
    child
}

#[tokio::test]
async fn sigterm_stops_a_plugin_running_as_pid_1() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let sockets = tempfile::tempdir().unwrap();
        // PID 1 of a new PID namespace, as in a container; `unshare` waits for it and
        // exits with its status.
        let mut unshare = start(
            "unshare",
            &[
                "--user",
                "--map-root-user",
                "--pid",
                "--fork",
                "--kill-child",
                env!("CARGO_BIN_EXE_test-plugin"),
            ],
            sockets.path(),
        )
        .await;
        let plugin = only_child(unshare.id().expect("running"));
        sigterm(plugin);
        let status = exit_of(&mut unshare).await;
        assert_eq!(
            status.code(),
            Some(0),
            "PID 1 exits 0 on SIGTERM: {status:?}"
        );
        assert_eq!(entries(sockets.path()), 0, "socket directory removed");
    })
    .await
    .expect("within the test timeout");
}

#[tokio::test]
async fn sigterm_stops_a_tcp_plugin_with_a_call_in_flight() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let listen = format!("127.0.0.1:{port}");
        // As in a pod: a fixed TCP address, the broker multiplexed.
        let (mut plugin, line) = start_with(
            env!("CARGO_BIN_EXE_test-plugin"),
            &[],
            dir.path(),
            &[("INTERCOM_LISTEN_ADDR", &listen)],
        )
        .await;
        assert!(line.starts_with("1|1|tcp|"), "a handshake: {line:?}");
        let channel = intercom::tonic::transport::Endpoint::from_shared(format!("http://{listen}"))
            .unwrap()
            .connect()
            .await
            .expect("connect to the plugin");
        let mut kv = intercom_tests::kv::kv_client::KvClient::new(channel);
        // A 30 s call keeps a stream open while the plugin is told to stop.
        let call = tokio::spawn(async move {
            kv.get(intercom_tests::kv::GetRequest {
                key: "sleep".into(),
            })
            .await
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        sigterm(plugin.id().expect("running"));
        let status = exit_of(&mut plugin).await;
        assert_eq!(status.code(), Some(0), "a graceful exit: {status:?}");
        assert!(call.await.unwrap().is_err(), "the call in flight fails");
    })
    .await
    .expect("within the test timeout");
}
