//! Runs the `counter` example end to end through its binary (host and plugin in one
//! executable) and checks its output.

#[path = "../../common/run.rs"]
mod common;

/// Runs the example with `args`; returns (success, stdout, stderr).
fn run(args: &[&str]) -> (bool, String, String) {
    let done = common::run(env!("CARGO_BIN_EXE_counter-traits"), args);
    (done.success, done.stdout, done.stderr)
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

// Run by scripts/test.sh, which turns the feature on.
#[cfg(feature = "kubernetes")]
#[test]
fn callbacks_cross_the_pod_boundary_on_kubernetes() {
    // A local control plane (intercom-envtest); the plugin runs as a Deployment and calls
    // back into the host through the broker over the port-forwarded connection.
    let (ok, stdout, stderr) = run(&["--kubernetes"]);
    assert!(ok, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.ends_with("hits = 6\n"), "stdout:\n{stdout}");
}
