//! Runs the `stream` example end to end through its binary (host and plugin in one
//! executable) and checks its output.

#[path = "../../common/run.rs"]
mod common;

/// Runs the example with `args`; returns (success, stdout, stderr).
fn run(args: &[&str]) -> (bool, String, String) {
    let done = common::run(env!("CARGO_BIN_EXE_stream"), args);
    (done.success, done.stdout, done.stderr)
}

#[test]
fn streams_the_whole_file() {
    let (ok, stdout, stderr) = run(&[]);
    assert!(ok, "stdout:\n{stdout}\nstderr:\n{stderr}");
    let size = std::fs::metadata(concat!(env!("CARGO_MANIFEST_DIR"), "/src/main.rs"))
        .expect("the example's source exists")
        .len();
    assert!(
        stdout.contains(&format!("read {size} bytes in")),
        "{stdout}"
    );
    assert!(stdout.contains("checksum: plugin"), "{stdout}");
    assert!(stderr.contains("sent the whole file"), "{stderr}");
}

#[test]
fn dropping_the_stream_stops_the_plugin_reader() {
    let big = env!("CARGO_BIN_EXE_stream");
    let (ok, stdout, stderr) = run(&[big, "1024", "2"]);
    assert!(ok, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("read 2048 bytes in 2 chunks"), "{stdout}");
    assert!(stderr.contains("the host stopped reading"), "{stderr}");
}

#[test]
fn a_missing_file_is_not_found() {
    let (ok, _, stderr) = run(&["/nonexistent/file"]);
    assert!(!ok);
    assert!(
        stderr.contains("failed to open /nonexistent/file"),
        "{stderr}"
    );
}
