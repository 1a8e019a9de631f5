//! The bidirectional example swaps with go-plugin's: the Rust `counter` host loads the Rust
//! and the Go plugin, and go-plugin's host (our Go fixture) loads the Rust `counter-plugin`.
//! Every `put` goes through the host's `AddHelper` callback on a broker id.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn go_fixture(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/go-fixtures")
        .join(name);
    assert!(
        path.is_file(),
        "Go fixture {} is missing: run `scripts/build-go-fixtures.sh` (the README test command does)",
        path.display()
    );
    path
}

fn output(host: &Path, plugin: &Path, args: &[&str], dir: &Path) -> Output {
    Command::new(host)
        .args(args)
        .current_dir(dir)
        .env("COUNTER_PLUGIN", plugin)
        .output()
        .expect("host runs")
}

fn run(host: &Path, plugin: &Path, args: &[&str], dir: &Path) -> String {
    let out = output(host, plugin, args, dir);
    assert!(
        out.status.success(),
        "{} {args:?} failed: {}",
        host.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// put x 1 twice, then get x: 2, stored as go-plugin's plugin stores it.
fn count_twice(host: &Path, plugin: &Path) {
    let dir = tempfile::tempdir().unwrap();
    run(host, plugin, &["put", "x", "1"], dir.path());
    run(host, plugin, &["put", "x", "1"], dir.path());
    assert_eq!(run(host, plugin, &["get", "x"], dir.path()), "2\n");
    let stored = std::fs::read_to_string(dir.path().join("kv_x")).unwrap();
    assert_eq!(stored.trim(), r#"{"Value":2}"#);
}

fn rust_host() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_counter"))
}

fn rust_plugin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_counter-plugin"))
}

#[test]
fn rust_host_and_rust_plugin() {
    count_twice(rust_host(), rust_plugin());
}

#[test]
fn rust_host_and_go_plugin() {
    count_twice(rust_host(), &go_fixture("counter-plugin"));
}

#[test]
fn go_host_and_rust_plugin() {
    count_twice(&go_fixture("counter-host"), rust_plugin());
}

#[test]
fn values_written_by_go_are_read_by_rust() {
    let dir = tempfile::tempdir().unwrap();
    let go = go_fixture("counter-plugin");
    run(rust_host(), &go, &["put", "k", "40"], dir.path());
    run(rust_host(), rust_plugin(), &["put", "k", "2"], dir.path());
    assert_eq!(run(rust_host(), &go, &["get", "k"], dir.path()), "42\n");
}

#[test]
fn callback_errors_missing_keys_and_bad_usage_fail_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let max = i64::MAX.to_string();
    run(
        rust_host(),
        rust_plugin(),
        &["put", "big", &max],
        dir.path(),
    );
    let out = output(rust_host(), rust_plugin(), &["put", "big", "1"], dir.path());
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("overflows"), "{stderr}");

    let out = output(rust_host(), rust_plugin(), &["get", "absent"], dir.path());
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("error: "));

    let out = Command::new(rust_host())
        .arg("nope")
        .env_remove("COUNTER_PLUGIN")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("COUNTER_PLUGIN"));
}
