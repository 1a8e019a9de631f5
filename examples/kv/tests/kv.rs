//! The KV example swaps with go-plugin's: the Rust `kv` host loads the Rust and the Go
//! plugin, and go-plugin's host shape (our Go fixture) loads the Rust `kv-plugin`.

use std::path::{Path, PathBuf};
use std::process::Command;

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

fn run(host: &Path, plugin: &Path, args: &[&str], dir: &Path) -> String {
    run_command(host, plugin.to_str().unwrap(), args, dir)
}

/// Runs `host` with `KV_PLUGIN` set to a shell command, as go-plugin's example host takes it.
fn run_command(host: &Path, plugin: &str, args: &[&str], dir: &Path) -> String {
    let out = Command::new(host)
        .args(args)
        .current_dir(dir)
        .env("KV_PLUGIN", plugin)
        .output()
        .expect("host runs");
    assert!(
        out.status.success(),
        "{} {args:?} failed: {}",
        host.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn rust_host_and_rust_plugin() {
    let dir = tempfile::tempdir().unwrap();
    let (host, plugin) = (
        Path::new(env!("CARGO_BIN_EXE_kv")),
        Path::new(env!("CARGO_BIN_EXE_kv-plugin")),
    );
    run(host, plugin, &["put", "hello", "world"], dir.path());
    assert_eq!(
        run(host, plugin, &["get", "hello"], dir.path()),
        "world\n\nWritten from plugin-rust-grpc\n"
    );
}

/// go-plugin's own Python plugin (tests/fixtures/python), started the way go-plugin's
/// README starts it: `KV_PLUGIN="python plugin.py"`.
#[test]
fn rust_host_and_python_plugin() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let python = root.join(".deps/python/bin/python");
    assert!(
        python.is_file(),
        "the Python venv is missing: run `scripts/setup-python.sh` (the README test command does)"
    );
    let plugin = root.join("tests/fixtures/python/kv_plugin.py");
    let command = format!("{} {}", python.display(), plugin.display());
    let dir = tempfile::tempdir().unwrap();
    let host = Path::new(env!("CARGO_BIN_EXE_kv"));
    run_command(host, &command, &["put", "hello", "world"], dir.path());
    assert_eq!(
        run_command(host, &command, &["get", "hello"], dir.path()),
        "world\n\nWritten from plugin-python\n"
    );
}

#[test]
fn rust_host_and_go_plugin() {
    let dir = tempfile::tempdir().unwrap();
    let (host, plugin) = (Path::new(env!("CARGO_BIN_EXE_kv")), go_fixture("kv-plugin"));
    run(host, &plugin, &["put", "hello", "world"], dir.path());
    assert_eq!(
        run(host, &plugin, &["get", "hello"], dir.path()),
        "world\n\nWritten from plugin-go-grpc\n"
    );
}

#[test]
fn go_host_and_rust_plugin() {
    let dir = tempfile::tempdir().unwrap();
    let (host, plugin) = (
        go_fixture("kv-host"),
        Path::new(env!("CARGO_BIN_EXE_kv-plugin")),
    );
    run(&host, plugin, &["put", "hello", "world"], dir.path());
    assert_eq!(
        run(&host, plugin, &["get", "hello"], dir.path()),
        "world\n\nWritten from plugin-rust-grpc\n"
    );
}

#[test]
fn missing_key_and_bad_usage_fail_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_kv"))
        .args(["get", "absent"])
        .current_dir(dir.path())
        .env("KV_PLUGIN", env!("CARGO_BIN_EXE_kv-plugin"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("error: "));
    let out = Command::new(env!("CARGO_BIN_EXE_kv"))
        .arg("nope")
        .env_remove("KV_PLUGIN")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("KV_PLUGIN"));
}
