//! No orphans: a plugin exits soon after its host dies, however the host dies (SIGKILL
//! here), whatever the host (Rust or Go), the plugin (Rust or Go) and the broker mode.
//!
//! Rust host: the kernel's parent-death signal (`ProcessLauncher`). Rust plugin: it
//! watches its parent. A Go plugin under a Go host is go-plugin's own business.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use intercom_tests::{go_fixture, pid_running};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Hang guard for "the plugin is gone"; the goal (≤ 2 s) is what the closing note measures.
const GONE_WITHIN: Duration = Duration::from_secs(5);

/// How long a plugin is gone after `since`, or `None` if it still runs after `within`.
async fn gone_after(pid: u32, since: Instant, within: Duration) -> Option<Duration> {
    while pid_running(pid) {
        if since.elapsed() > within {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Some(since.elapsed())
}

/// SIGKILLs `host` and asserts `plugin` follows it within the bound.
async fn kill_host_and_expect_plugin_gone(mut host: Child, plugin: u32, what: &str) {
    assert!(
        pid_running(plugin),
        "{what}: the plugin runs before the host dies"
    );
    let started = Instant::now();
    host.start_kill().expect("SIGKILL the host");
    let _ = host.wait().await;
    match gone_after(plugin, started, GONE_WITHIN).await {
        Some(after) => eprintln!("{what}: plugin gone {after:?} after the host's SIGKILL"),
        None => {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(plugin as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            panic!("{what}: plugin {plugin} outlived its SIGKILLed host by {GONE_WITHIN:?}");
        }
    }
}

/// Starts the Rust test host on `plugin` and reads the plugin's pid from it. A SIGKILLed
/// host cannot remove the plugin's socket directory: it is made in `sockets`.
async fn rust_host(plugin: &Path, mux: bool, sockets: &Path) -> (Child, u32) {
    let mut host = Command::new(env!("CARGO_BIN_EXE_test-host"))
        .arg(plugin)
        .env("INTERCOM_TEST_HOST_SOCKETS", sockets)
        .env("INTERCOM_TEST_HOST_MUX", if mux { "1" } else { "0" })
        .env_remove("INTERCOM_TEST_MODE")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start test-host");
    let stdout = host.stdout.take().expect("piped stdout");
    let mut line = String::new();
    tokio::time::timeout(
        Duration::from_secs(30),
        BufReader::new(stdout).read_line(&mut line),
    )
    .await
    .expect("test-host starts its plugin")
    .expect("read test-host's stdout");
    let pid = line
        .trim()
        .parse()
        .expect("test-host prints the plugin's pid");
    (host, pid)
}

#[tokio::test]
async fn a_sigkilled_rust_host_takes_its_rust_plugin_down() {
    let sockets = tempfile::tempdir().unwrap();
    for mux in [false, true] {
        let program = Path::new(env!("CARGO_BIN_EXE_test-plugin"));
        let (host, plugin) = rust_host(program, mux, sockets.path()).await;
        kill_host_and_expect_plugin_gone(host, plugin, &format!("Rust plugin, mux={mux}")).await;
    }
}

#[tokio::test]
async fn a_sigkilled_rust_host_takes_its_go_plugin_down() {
    let sockets = tempfile::tempdir().unwrap();
    for mux in [false, true] {
        let (host, plugin) = rust_host(&go_fixture("kv-plugin"), mux, sockets.path()).await;
        kill_host_and_expect_plugin_gone(host, plugin, &format!("Go plugin, mux={mux}")).await;
    }
}

/// The children of `parent` (from /proc).
fn children_of(parent: u32) -> Vec<(u32, String)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let (comm, rest) = stat.split_once(" (")?.1.rsplit_once(") ")?;
            let ppid: u32 = rest.split_whitespace().nth(1)?.parse().ok()?;
            (ppid == parent).then(|| (pid, comm.to_string()))
        })
        .collect()
}

#[tokio::test]
async fn a_sigkilled_go_host_takes_its_rust_plugin_down() {
    // The case found by hand: a go-plugin host SIGKILLed while a call is in flight.
    for (mux, mtls) in [(false, false), (true, true)] {
        let dir = tempfile::tempdir().unwrap();
        let host = Command::new(go_fixture("kv-host"))
            .args(["get", "sleep"])
            .current_dir(dir.path())
            .env(
                "KV_PLUGIN",
                format!("exec {}", env!("CARGO_BIN_EXE_test-plugin")),
            )
            .env("INTERCOM_FIXTURE_MUX", if mux { "1" } else { "0" })
            .env("INTERCOM_FIXTURE_MTLS", if mtls { "1" } else { "0" })
            .env_remove("INTERCOM_TEST_MODE")
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start kv-host");
        let host_pid = host.id().expect("kv-host runs");
        let deadline = Instant::now() + Duration::from_secs(30);
        let plugin = loop {
            let found = children_of(host_pid)
                .into_iter()
                .find(|(_, comm)| comm == "test-plugin");
            if let Some((pid, _)) = found {
                break pid;
            }
            assert!(
                Instant::now() < deadline,
                "kv-host never started the plugin"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        // Let the handshake and the 30 s `get sleep` call get under way.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let what = format!("Go host, Rust plugin, mux={mux}, mtls={mtls}");
        kill_host_and_expect_plugin_gone(host, plugin, &what).await;
    }
}

/// A Rust plugin started by `sh` (which then waits), as a host in any language would.
/// Returns the shell and the plugin's pid.
async fn plugin_under_shell(socket_dir: &Path, extra: &[(&str, &str)]) -> (Child, u32) {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!(
            "{} >/dev/null & echo $!; wait",
            env!("CARGO_BIN_EXE_test-plugin")
        ))
        .env("BASIC_PLUGIN", "hello")
        .env("PLUGIN_PROTOCOL_VERSIONS", "1")
        .env("PLUGIN_UNIX_SOCKET_DIR", socket_dir)
        .env_remove("INTERCOM_TEST_MODE");
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let (shell, line) = intercom_tests::spawn_and_read_line(cmd).await;
    let pid = line.trim().parse().expect("sh prints the plugin's pid");
    // The plugin has bound its socket once its directory exists.
    let deadline = Instant::now() + Duration::from_secs(10);
    while entries(socket_dir) == 0 {
        assert!(
            Instant::now() < deadline,
            "the plugin never made its socket"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (shell, pid)
}

fn entries(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

#[tokio::test]
async fn a_rust_plugin_whose_parent_dies_shuts_down_and_removes_its_socket() {
    let sockets = tempfile::tempdir().unwrap();
    let (shell, plugin) = plugin_under_shell(sockets.path(), &[]).await;
    kill_host_and_expect_plugin_gone(shell, plugin, "Rust plugin under sh").await;
    assert_eq!(entries(sockets.path()), 0, "socket directory removed");
}

#[tokio::test]
async fn outlive_host_keeps_a_rust_plugin_running_and_sigterm_stops_it_cleanly() {
    let sockets = tempfile::tempdir().unwrap();
    let (mut shell, plugin) =
        plugin_under_shell(sockets.path(), &[("INTERCOM_OUTLIVE_HOST", "1")]).await;
    shell.start_kill().unwrap();
    let _ = shell.wait().await;
    // Several parent polls later it still runs.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        pid_running(plugin),
        "INTERCOM_OUTLIVE_HOST: the plugin outlives its parent"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(plugin as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(
        gone_after(plugin, Instant::now(), GONE_WITHIN)
            .await
            .is_some(),
        "SIGTERM stops the plugin"
    );
    assert_eq!(
        entries(sockets.path()),
        0,
        "a plugin stopped by SIGTERM removes its socket directory"
    );
}
