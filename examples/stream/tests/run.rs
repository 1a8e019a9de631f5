//! Runs the `stream` example end to end through its binary (host and plugin in one
//! executable) and checks its output.

use std::io::Read;
use std::process::{Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The longest one run may take (it normally takes well under a second).
const DEADLINE: Duration = Duration::from_secs(60);

/// Runs the example with `args`; returns (success, stdout, stderr).
fn run(args: &[&str]) -> (bool, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_stream"))
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
