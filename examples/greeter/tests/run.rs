//! Runs the `greeter` example end to end through its binary (host and plugin in one
//! executable) and checks its output.

use std::io::Read;
use std::process::{Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The longest one run may take (it normally takes well under a second).
const DEADLINE: Duration = Duration::from_secs(60);

/// Runs the example with `args`; returns (success, stdout, stderr).
fn run(args: &[&str]) -> (bool, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_greeter"))
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
fn greets_through_the_generated_client() {
    let (ok, stdout, stderr) = run(&["Ferris"]);
    assert!(ok, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(
        stdout.starts_with("Hello, Ferris! (from plugin pid "),
        "{stdout}"
    );
    let pid: u32 = stdout
        .trim()
        .trim_start_matches("Hello, Ferris! (from plugin pid ")
        .trim_end_matches(')')
        .parse()
        .expect("a pid in the greeting");
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|s| s.contains(") Z")),
        "plugin {pid} outlived the host"
    );
    assert!(
        stderr.contains("intercom::plugin") && stderr.contains("greeting"),
        "{stderr}"
    );
}

#[test]
fn errors_cross_as_statuses() {
    let (ok, stdout, stderr) = run(&[""]);
    assert!(!ok, "an empty name must fail\nstdout:\n{stdout}");
    assert!(stderr.contains("the name to greet is empty"), "{stderr}");
}

#[test]
fn prints_the_proto() {
    let (ok, stdout, _) = run(&["--proto"]);
    assert!(ok);
    assert!(stdout.contains("package intercom.greeter;"), "{stdout}");
    assert!(
        stdout.contains("rpc Greet(GreetRequest) returns (GreetResponse);"),
        "{stdout}"
    );
}

#[test]
fn greets_through_a_plugin_running_on_kubernetes() {
    // A local control plane (intercom-envtest); the plugin runs as a Deployment.
    let (ok, stdout, stderr) = run(&["--kubernetes", "Ferris"]);
    assert!(ok, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("Hello, Ferris!"), "stdout:\n{stdout}");
}
