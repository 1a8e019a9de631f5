//! Runs the `greeter` example end to end through its binary (host and plugin in one
//! executable) and checks its output.

#[path = "../../common/run.rs"]
mod common;

/// Runs the example with `args`; returns (success, stdout, stderr).
fn run(args: &[&str]) -> (bool, String, String) {
    let done = common::run(env!("CARGO_BIN_EXE_greeter"), args);
    (done.success, done.stdout, done.stderr)
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
    assert!(!common::is_running(pid), "plugin {pid} outlived the host");
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

#[cfg(not(feature = "kubernetes"))]
#[test]
fn kubernetes_says_which_feature_it_needs() {
    let (ok, _, stderr) = run(&["--kubernetes", "Ferris"]);
    assert!(!ok);
    assert!(stderr.contains("--features kubernetes"), "{stderr}");
}

// Run by scripts/test.sh, which turns the feature on.
#[cfg(feature = "kubernetes")]
#[test]
fn greets_through_a_plugin_running_on_kubernetes() {
    // A local control plane (intercom-envtest); the plugin runs as a Deployment.
    let (ok, stdout, stderr) = run(&["--kubernetes", "Ferris"]);
    assert!(ok, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("Hello, Ferris!"), "stdout:\n{stdout}");
}
