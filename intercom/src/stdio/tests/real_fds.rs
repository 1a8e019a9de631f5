//! Capturing the real fd 1 and 2, in a child process of the test binary.

use std::error::Error;
use std::io::{self, Write};

use super::{TestResult, collect, joined, open};
use crate::proto::stdio_data::Channel;
use crate::stdio::StdioCapture;

const CHILD_ENV: &str = "INTERCOM_STDIO_TEST_CHILD";

/// Runs in a child process (see the next test): captures the real fd 1 and 2.
#[test]
fn stdio_real_fds_child() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let result = real_fds_child_body();
    // Restored: these reach the parent through the real pipes.
    println!("restored-stdout");
    eprintln!("restored-stderr");
    if let Err(err) = result {
        panic!("child failed: {err}");
    }
}

fn real_fds_child_body() -> Result<(), Box<dyn Error + Send + Sync>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let capture = StdioCapture::install()?;
    writeln!(capture.original_stderr(), "via-original")?;
    println!("captured-println");
    print!("partial");
    io::stdout().flush()?;
    eprintln!("captured-eprintln");
    let mut stream = open(&capture.service)?;
    let want_out = b"captured-println\npartial";
    let want_err = b"captured-eprintln\n";
    let chunks = runtime.block_on(collect(&mut stream, want_out.len(), want_err.len()))?;
    drop(capture);
    if joined(&chunks, Channel::Stdout) != want_out || joined(&chunks, Channel::Stderr) != want_err
    {
        return Err(format!("unexpected chunks: {chunks:?}").into());
    }
    Ok(())
}

#[test]
fn stdio_real_fds_install_and_restore() -> TestResult {
    if std::env::var_os(CHILD_ENV).is_some() {
        return Ok(());
    }
    let output = std::process::Command::new(std::env::current_exe()?)
        .args([
            "--exact",
            "stdio::tests::real_fds::stdio_real_fds_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, "1")
        .stdin(std::process::Stdio::null())
        .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let context = format!(
        "status {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    assert!(output.status.success(), "{context}");
    assert!(stdout.contains("1 passed"), "{context}");
    assert!(stdout.contains("restored-stdout"), "{context}");
    assert!(stderr.contains("restored-stderr"), "{context}");
    assert!(stderr.contains("via-original"), "{context}");
    assert!(
        !stdout.contains("captured") && !stdout.contains("partial"),
        "{context}"
    );
    assert!(!stderr.contains("captured"), "{context}");
    Ok(())
}
