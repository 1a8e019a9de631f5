//! Shared by the examples' end-to-end tests (each includes it with `#[path]`): runs an
//! example's binary to the end and captures what it printed.
#![allow(dead_code)] // each test file uses part of it

use std::io::Read;
use std::process::{Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The longest one run may take (it normally takes well under a second).
pub const DEADLINE: Duration = Duration::from_secs(60);

/// How a run ended.
pub struct Finished {
    /// Exit status 0.
    pub success: bool,
    /// The example's (host's) pid.
    pub pid: u32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `exe` with `args` (plugin log lines forwarded at info, whatever the caller's
/// environment) and waits for it, at most [`DEADLINE`].
///
/// # Panics
/// When the example cannot be started or does not exit in time.
pub fn run(exe: &str, args: &[&str]) -> Finished {
    let mut child = Command::new(exe)
        .args(args)
        .env("RUST_LOG", "info")
        .env_remove("INTERCOM_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("failed to start the example");
    // Drain both pipes on threads so a chatty child can never block on a full pipe.
    let stdout = drain(child.stdout.take().expect("stdout is piped"));
    let stderr = drain(child.stderr.take().expect("stderr is piped"));
    let deadline = Instant::now() + DEADLINE;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) | Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let stdout = stdout.join().expect("stdout reader panicked");
    let stderr = stderr.join().expect("stderr reader panicked");
    let status = status.unwrap_or_else(|| {
        panic!("{exe} did not exit within {DEADLINE:?}\nstdout:\n{stdout}\nstderr:\n{stderr}")
    });
    Finished {
        success: status.success(),
        pid: child.id(),
        stdout,
        stderr,
    }
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

/// Whether `pid` is a live process: `/proc/<pid>` exists and its state is not zombie.
pub fn is_running(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state letter follows the `(comm)` field, and comm may contain ')'.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next());
    !matches!(state, Some("Z" | "X"))
}
