//! Runs the `basic` example end to end. The host launches itself as the plugin, greets
//! `Ferris`, and must leave no plugin process behind.

#[path = "../../common/run.rs"]
mod common;

#[test]
fn greets_ferris_and_leaves_no_plugin_behind() {
    let done = common::run(env!("CARGO_BIN_EXE_basic"), &["Ferris"]);
    let (stdout, stderr) = (&done.stdout, &done.stderr);
    assert!(
        done.success,
        "basic failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
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

    let pid = plugin_pid(stdout)
        .unwrap_or_else(|| panic!("no `(from plugin pid N)` in the greeting:\n{stdout}"));
    assert_ne!(
        pid, done.pid,
        "the greeting must come from a separate plugin process"
    );
    assert!(
        !common::is_running(pid),
        "plugin process {pid} still exists after the host exited"
    );
}

/// The pid in `Hello, Ferris! (from plugin pid 1234)`.
fn plugin_pid(stdout: &str) -> Option<u32> {
    let rest = stdout.split("(from plugin pid ").nth(1)?;
    rest.split(')').next()?.trim().parse().ok()
}
