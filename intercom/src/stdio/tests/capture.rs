//! Tests of [`StdioCapture`] and [`StdioService`] on descriptors the tests own.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::time::Duration;

use futures::StreamExt;
use tonic::{Code, Request};

use super::{TestResult, WAIT, capture_on_temp_files, collect, joined, open};
use crate::proto::grpc_stdio_server::GrpcStdio;
use crate::proto::stdio_data::Channel;
use crate::stdio::redirect::cloexec;
use crate::stdio::{CHUNK_SIZE, StdioCapture, StdioService};

#[tokio::test]
async fn stdio_chunks_are_bounded_and_a_large_write_arrives_whole() -> TestResult {
    let (capture, out, err) = capture_on_temp_files()?;
    let data: Vec<u8> = (0..10 * 1024u32).map(|i| (i % 251) as u8).collect();
    (&out).write_all(&data)?;
    let mut stream = open(&capture.service)?;
    let chunks = collect(&mut stream, data.len(), 0).await?;
    assert!(
        chunks
            .iter()
            .all(|c| !c.data.is_empty() && c.data.len() <= CHUNK_SIZE)
    );
    assert!(chunks.iter().all(|c| c.channel == Channel::Stdout as i32));
    assert!(chunks.len() >= 10);
    assert_eq!(joined(&chunks, Channel::Stdout), data);
    drop(capture);
    drop((out, err));
    Ok(())
}

#[tokio::test]
async fn stdio_order_is_preserved_per_channel() -> TestResult {
    let (capture, out, err) = capture_on_temp_files()?;
    let mut stream = open(&capture.service)?;
    let (mut want_out, mut want_err) = (Vec::new(), Vec::new());
    for i in 0..300 {
        let line = format!("out-{i}\n");
        (&out).write_all(line.as_bytes())?;
        want_out.extend_from_slice(line.as_bytes());
        let line = format!("err-{i}\n");
        (&err).write_all(line.as_bytes())?;
        want_err.extend_from_slice(line.as_bytes());
    }
    let chunks = collect(&mut stream, want_out.len(), want_err.len()).await?;
    assert!(
        chunks
            .iter()
            .all(|c| !c.data.is_empty() && c.data.len() <= CHUNK_SIZE)
    );
    assert_eq!(joined(&chunks, Channel::Stdout), want_out);
    assert_eq!(joined(&chunks, Channel::Stderr), want_err);
    drop(capture);
    drop((out, err));
    Ok(())
}

#[tokio::test]
async fn stdio_output_written_before_the_stream_opens_is_delivered() -> TestResult {
    let (capture, out, err) = capture_on_temp_files()?;
    (&out).write_all(b"early out\n")?;
    (&err).write_all(b"early err\n")?;
    // Let the readers move it into the channel: nobody is streaming yet.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut stream = open(&capture.service)?;
    let chunks = collect(&mut stream, 10, 10).await?;
    assert_eq!(joined(&chunks, Channel::Stdout), b"early out\n");
    assert_eq!(joined(&chunks, Channel::Stderr), b"early err\n");
    drop(capture);
    drop((out, err));
    Ok(())
}

#[tokio::test]
async fn stdio_one_stream_at_a_time_and_reopen_after_cancel() -> TestResult {
    let (capture, out, err) = capture_on_temp_files()?;
    let first = open(&capture.service)?;
    // Through the gRPC trait this time.
    let second = GrpcStdio::stream_stdio(&capture.service, Request::new(())).await;
    let status = second.err().ok_or("second call succeeded")?;
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(status.message(), "stdio stream already consumed");
    drop(first);
    // A host that reconnects (Kubernetes) gets a new stream once the old one is gone.
    let again = open(&capture.service)?;
    drop(again);
    drop(capture);
    drop((out, err));
    Ok(())
}

#[tokio::test]
async fn stdio_cancelled_stream_leaves_writers_unblocked() -> TestResult {
    let (capture, out, err) = capture_on_temp_files()?;
    let stream = open(&capture.service)?;
    drop(stream);
    // Far more than the pipe plus the channel hold: blocks forever unless discarded.
    let out = tokio::time::timeout(
        WAIT,
        tokio::task::spawn_blocking(move || -> io::Result<File> {
            let block = vec![b'x'; 64 * 1024];
            for _ in 0..32 {
                (&out).write_all(&block)?;
            }
            Ok(out)
        }),
    )
    .await
    .map_err(|_| "writer blocked after the stream was cancelled")???;
    drop(capture);
    drop((out, err));
    Ok(())
}

#[tokio::test]
async fn stdio_drop_restores_the_descriptors() -> TestResult {
    let out = tempfile::tempfile()?;
    let err = tempfile::tempfile()?;
    (&out).write_all(b"before|")?;
    // SAFETY: both files outlive the capture.
    let capture = unsafe { StdioCapture::install_on(out.as_raw_fd(), err.as_raw_fd()) }?;
    assert!(cloexec(out.as_fd())?, "close-on-exec flag kept");
    (&out).write_all(b"captured|")?;
    let mut stream = open(&capture.service)?;
    let chunks = collect(&mut stream, 9, 0).await?;
    assert_eq!(joined(&chunks, Channel::Stdout), b"captured|");
    drop(capture);
    (&out).write_all(b"after")?;
    let mut text = String::new();
    let mut file = out;
    file.seek(SeekFrom::Start(0))?;
    file.read_to_string(&mut text)?;
    assert_eq!(text, "before|after");
    assert!(cloexec(file.as_fd())?, "close-on-exec flag restored");
    Ok(())
}

#[tokio::test]
async fn stdio_original_stderr_bypasses_the_capture() -> TestResult {
    let out = tempfile::tempfile()?;
    let (mut original, err) = io::pipe()?;
    // SAFETY: `out` and `err` outlive the capture.
    let capture = unsafe { StdioCapture::install_on(out.as_raw_fd(), err.as_raw_fd()) }?;
    let logger = capture.original_stderr();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logger.clone())
        .with_ansi(false)
        .finish();
    tracing::subscriber::with_default(subscriber, || tracing::info!("hello-logger"));
    logger.clone().write_all(b"raw-line\n")?;
    (&err).write_all(b"captured-err\n")?;

    let mut stream = open(&capture.service)?;
    let chunks = collect(&mut stream, 0, 13).await?;
    assert_eq!(joined(&chunks, Channel::Stderr), b"captured-err\n");

    let (seen, original) = tokio::time::timeout(
        WAIT,
        tokio::task::spawn_blocking(move || -> io::Result<(String, io::PipeReader)> {
            let mut seen = Vec::new();
            let mut buf = [0; 4096];
            while !(String::from_utf8_lossy(&seen).contains("hello-logger")
                && String::from_utf8_lossy(&seen).contains("raw-line"))
            {
                let n = original.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                seen.extend_from_slice(&buf[..n]);
            }
            Ok((String::from_utf8_lossy(&seen).into_owned(), original))
        }),
    )
    .await
    .map_err(|_| "logger output never reached the original stderr")???;
    assert!(seen.contains("hello-logger"), "{seen}");
    assert!(seen.contains("raw-line\n"), "{seen}");
    assert!(!seen.contains("captured-err"), "{seen}");
    drop(capture);
    // Still usable after the capture is gone.
    logger.clone().write_all(b"late\n")?;
    let mut original = original;
    let mut late = [0; 5];
    original.read_exact(&mut late)?;
    assert_eq!(&late, b"late\n");
    drop((out, err));
    Ok(())
}

#[tokio::test]
async fn stdio_empty_service_stays_open_without_data() -> TestResult {
    let service = StdioService::empty();
    let mut first = open(&service)?;
    let mut second = open(&service)?;
    let waited = tokio::time::timeout(Duration::from_millis(100), first.next()).await;
    assert!(waited.is_err(), "empty stream yielded {waited:?}");
    let waited = tokio::time::timeout(Duration::from_millis(10), second.next()).await;
    assert!(waited.is_err(), "empty stream yielded {waited:?}");
    Ok(())
}
