//! Runs the `counter` example end to end through its binary (host and plugin in one
//! executable) and checks its output.

use std::io::Read;
use std::process::{Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The longest one run may take (it normally takes well under a second).
const DEADLINE: Duration = Duration::from_secs(60);

/// Runs the example with `args`; returns (success, stdout, stderr).
fn run(args: &[&str]) -> (bool, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_counter-traits"))
        .args(args)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("failed to start the example");
    let stdout = drain(child.stdout.take().expect("stdout is piped"));
    let stderr = drain(child.stderr.take().expect("stderr is piped"));
    let deadline = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().expect("failed to wait for the example") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = stdout.join().expect("stdout reader panicked");
    let stderr = stderr.join().expect("stderr reader panicked");
    let status = status.unwrap_or_else(|| {
        panic!("the example did not exit within {DEADLINE:?}\nstdout:\n{stdout}\nstderr:\n{stderr}")
    });
    (status.success(), stdout, stderr)
}

fn drain(mut pipe: impl Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

#[test]
fn the_plugin_calls_back_into_the_host() {
    let (ok, stdout, stderr) = run(&[]);
    assert!(ok, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert_eq!(
        stdout,
        "host: plugin asked for 0 + 1\nhits = 1\nhost: plugin asked for 1 + 2\nhits = 3\nhost: plugin asked for 3 + 3\nhits = 6\n"
    );
}

#[test]
fn callback_errors_reach_the_host() {
    let (ok, stdout, stderr) = run(&["big", &i64::MAX.to_string(), "2"]);
    assert!(!ok, "the second put overflows\nstdout:\n{stdout}");
    assert!(stderr.contains("overflows"), "{stderr}");
}

#[test]
fn callbacks_cross_the_pod_boundary_on_kubernetes() {
    // A local control plane (intercom-envtest); the plugin runs as a Deployment and calls
    // back into the host through the broker over the port-forwarded connection.
    let (ok, stdout, stderr) = run(&["--kubernetes"]);
    assert!(ok, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.ends_with("hits = 6\n"), "stdout:\n{stdout}");
}
