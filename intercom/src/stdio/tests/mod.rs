//! Tests of the capture, the service and the host-side pump, by concern; the helpers
//! they share.

use std::error::Error;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;

use futures::StreamExt;
use tonic::Status;

use super::{StdioCapture, StdioService, StdioStream};
use crate::proto::StdioData;
use crate::proto::stdio_data::Channel;

mod capture;
mod pump;
mod real_fds;

type TestResult = Result<(), Box<dyn Error + Send + Sync>>;

const WAIT: Duration = Duration::from_secs(10);

/// A capture on two temp files the test owns (never fd 1/2). The files are returned
/// after the capture in the tuple, but the caller must drop the capture first.
fn capture_on_temp_files() -> io::Result<(StdioCapture, File, File)> {
    let out = tempfile::tempfile()?;
    let err = tempfile::tempfile()?;
    // SAFETY: both files outlive the capture in every test using this helper.
    let capture = unsafe { StdioCapture::install_on(out.as_raw_fd(), err.as_raw_fd()) }?;
    Ok((capture, out, err))
}

fn open(service: &StdioService) -> Result<StdioStream, Status> {
    service.open()
}

/// Receives chunks until `stdout_len` and `stderr_len` bytes arrived on each channel.
async fn collect(
    stream: &mut StdioStream,
    stdout_len: usize,
    stderr_len: usize,
) -> Result<Vec<StdioData>, Box<dyn Error + Send + Sync>> {
    let mut chunks = Vec::new();
    let (mut out, mut err) = (0, 0);
    while out < stdout_len || err < stderr_len {
        let chunk = tokio::time::timeout(WAIT, stream.next())
            .await
            .map_err(|_| format!("timed out with {out} stdout and {err} stderr bytes"))?
            .ok_or("stream ended")??;
        match Channel::try_from(chunk.channel)? {
            Channel::Stdout => out += chunk.data.len(),
            Channel::Stderr => err += chunk.data.len(),
            Channel::Invalid => return Err("INVALID chunk".into()),
        }
        chunks.push(chunk);
    }
    Ok(chunks)
}

fn joined(chunks: &[StdioData], channel: Channel) -> Vec<u8> {
    chunks
        .iter()
        .filter(|c| c.channel == channel as i32)
        .flat_map(|c| c.data.iter().copied())
        .collect()
}
