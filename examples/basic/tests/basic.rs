//! Runs the `basic` example end to end. The host launches itself as the plugin, greets
//! `Ferris`, and must leave no plugin process behind.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The longest the whole run may take (it normally takes well under a second).
const DEADLINE: Duration = Duration::from_secs(60);

#[test]
fn greets_ferris_and_leaves_no_plugin_behind() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_basic"))
        .arg("Ferris")
        // Make sure the plugin's info line is forwarded, whatever the caller's environment.
        .env("RUST_LOG", "info")
        .env_remove("INTERCOM_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("failed to start the basic example");
    // Drain both pipes on threads so a chatty child can never block on a full pipe.
    let stdout = drain(child.stdout.take().expect("stdout is piped"));
    let stderr = drain(child.stderr.take().expect("stderr is piped"));

    let status = wait_with_deadline(&mut child, DEADLINE);
    let stdout = stdout.join().expect("stdout reader panicked");
    let stderr = stderr.join().expect("stderr reader panicked");
    let status = status.unwrap_or_else(|| {
        panic!("basic did not exit within {DEADLINE:?}\nstdout:\n{stdout}\nstderr:\n{stderr}")
    });

    assert!(
        status.success(),
        "basic failed with {status}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        stdout.contains("Hello, Ferris!"),
        "no greeting on stdout\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    // The plugin's `tracing::info!` crossed over as hclog JSON and was logged by the host.
    assert!(
        stderr.contains("intercom::plugin") && stderr.contains("greeting"),
        "the plugin's log line was not forwarded\nstderr:\n{stderr}"
    );

    let pid = plugin_pid(&stdout)
        .unwrap_or_else(|| panic!("no `(from plugin pid N)` in the greeting:\n{stdout}"));
    assert_ne!(
        pid,
        child.id(),
        "the greeting must come from a separate plugin process"
    );
    assert!(
        !is_running(pid),
        "plugin process {pid} still exists after the host exited"
    );
}

/// Reads `pipe` to the end on a thread.
fn drain(mut pipe: impl Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        // A read error ends the capture early. The assertions then show what arrived.
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Polls `child` until it exits or `limit` passes. On timeout it kills the child and
/// returns `None`.
fn wait_with_deadline(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            Ok(None) | Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}

/// The pid in `Hello, Ferris! (from plugin pid 1234)`.
fn plugin_pid(stdout: &str) -> Option<u32> {
    let rest = stdout.split("(from plugin pid ").nth(1)?;
    rest.split(')').next()?.trim().parse().ok()
}

/// Whether `pid` is a live process: `/proc/<pid>` exists and its state is not zombie.
fn is_running(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state letter follows the `(comm)` field, and comm may contain ')'.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next());
    !matches!(state, Some("Z" | "X"))
}
