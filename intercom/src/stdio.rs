//! Stdout/stderr syncing over `plugin.GRPCStdio/StreamStdio`, both sides.
//!
//! # Plugin side
//!
//! A Go plugin, once its handshake line is out, swaps its `os.Stdout`/`os.Stderr`
//! variables for pipes and streams whatever user code writes there to the host. Rust has
//! no such variables, so [`StdioCapture::install`] works one level lower: it points the
//! process's file descriptors 1 and 2 at pipes, and reader threads turn what arrives into
//! [`StdioData`] chunks of at most 1024 bytes (never empty, never `INVALID`).
//! [`StdioCapture::service`] serves them, once, to the first host that calls
//! `StreamStdio`. The original stderr stays reachable through
//! [`StdioCapture::original_stderr`], which is where the plugin's own logger belongs: the
//! host reads that stream line by line as the plugin's log.
//!
//! Everything that reaches fd 1 or 2 is captured: `println!`/`eprintln!`, `std::io::stdout()`,
//! C libraries, panic messages printed by the default hook, and child processes that
//! inherit the descriptors. `std::io::stdout()` is line-buffered, so a partial line
//! (`print!("42")`) stays in the process until `std::io::stdout().flush()` or the next
//! newline.
//!
//! Like go-plugin, writers feel back-pressure: at most 64 chunks wait in memory (plus what
//! the kernel pipe holds, typically 64 KiB per stream); after that writes to stdout/stderr
//! block until a host streams them. Once a host has opened the stream and cancelled it,
//! further output is read and discarded, so writers never block again.
//!
//! # Host side
//!
//! [`pump`] opens the stream and copies `STDOUT` and `STDERR` chunks to two writers.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tonic::codegen::{Body, Bytes, StdError};
use tonic::{Code, Request, Response, Status};

use crate::proto::StdioData;
use crate::proto::grpc_stdio_client::GrpcStdioClient;
use crate::proto::grpc_stdio_server::{GrpcStdio, GrpcStdioServer};
use crate::proto::stdio_data::Channel;

/// Largest chunk sent in one [`StdioData`] message (go-plugin's `grpcStdioBuffer`).
const CHUNK_SIZE: usize = 1024;

/// Chunks held in memory while no host is streaming, shared by stdout and stderr.
const BUFFERED_CHUNKS: usize = 64;

/// Redirects the process's fd 1 and fd 2 into pipes whose content is served by
/// [`StdioService`], keeping a duplicate of the original stderr for the logger.
///
/// Dropping it points fd 1 and 2 back at the original streams (best effort). Data already
/// captured stays available to the service; output still buffered inside
/// `std::io::stdout()` goes to the original stdout.
#[derive(Debug)]
pub struct StdioCapture {
    // Field order is drop order: restore stdout, then stderr. Held for its `Drop`.
    _stdout: Redirect,
    stderr: Redirect,
    service: StdioService,
}

impl StdioCapture {
    /// Captures the process's stdout (fd 1) and stderr (fd 2).
    ///
    /// Saves close-on-exec duplicates of both descriptors, creates two pipes, starts one
    /// reader thread per pipe and `dup2`s the pipes' write ends onto fd 1 and 2.
    /// `std::io::stdout()` is flushed (under its lock) first, so text printed before the
    /// call, such as the handshake line, still goes to the real stdout.
    ///
    /// # Caveats
    ///
    /// - Call it once per process, after the handshake line has been printed and flushed;
    ///   the host reads only that line from the real stdout.
    /// - The redirection is process-wide, including threads already running and children
    ///   spawned later with inherited stdio.
    /// - Output blocks once the buffers are full until a host opens `StreamStdio`
    ///   (see the [module docs](crate::stdio)).
    ///
    /// # Errors
    ///
    /// Any failing `dup`, `pipe`, `dup2` or thread spawn; fd 1 and 2 are left (or put
    /// back) as they were.
    pub fn install() -> io::Result<StdioCapture> {
        let stdout = io::stdout();
        let mut lock = stdout.lock();
        lock.flush()?;
        // SAFETY: fd 1 and 2 are the process's standard streams; a `Redirect` keeps them
        // open (it only ever `dup2`s onto them), so they stay valid for its whole life.
        let capture = unsafe { Self::install_on(libc::STDOUT_FILENO, libc::STDERR_FILENO) };
        drop(lock);
        capture
    }

    /// Captures two arbitrary descriptors; [`install`](Self::install) with fds of the
    /// caller's choosing, so tests need not touch the harness's own stdio.
    ///
    /// # Safety
    ///
    /// `stdout_fd` and `stderr_fd` must be open, and stay open (nobody else closes them)
    /// until the returned capture is dropped, which `dup2`s over them again.
    unsafe fn install_on(stdout_fd: RawFd, stderr_fd: RawFd) -> io::Result<StdioCapture> {
        let (tx, rx) = mpsc::channel(BUFFERED_CHUNKS);
        let sender: SenderSlot = Arc::new(Mutex::new(Some(tx)));
        let stdout_pipe = start_reader(Channel::Stdout, sender.clone())?;
        let stderr_pipe = start_reader(Channel::Stderr, sender.clone())?;
        // SAFETY: forwarded from this function's contract.
        let stdout = unsafe { Redirect::new(stdout_fd, stdout_pipe.as_fd()) }?;
        // On error `stdout` is dropped here, which restores `stdout_fd`.
        // SAFETY: forwarded from this function's contract.
        let stderr = unsafe { Redirect::new(stderr_fd, stderr_pipe.as_fd()) }?;
        // The pipes' write ends now live only in the redirected fds, so the readers see
        // EOF once those are restored.
        drop((stdout_pipe, stderr_pipe));
        Ok(StdioCapture {
            _stdout: stdout,
            stderr,
            service: StdioService {
                source: Source::Captured(Arc::new(Captured {
                    first: Mutex::new(Some(rx)),
                    sender,
                    active: std::sync::atomic::AtomicBool::new(false),
                })),
            },
        })
    }

    /// A writer to the original stderr, for the plugin's own (hclog-format) logger.
    ///
    /// It implements [`tracing_subscriber::fmt::MakeWriter`] and [`std::io::Write`], and
    /// stays valid after the capture is dropped.
    pub fn original_stderr(&self) -> OriginalStderr {
        OriginalStderr {
            file: Arc::clone(&self.stderr.saved),
        }
    }

    /// The `plugin.GRPCStdio` service streaming the captured output.
    ///
    /// Every returned server shares the same data: the first `StreamStdio` call, on any of
    /// them, gets it all.
    pub fn service(&self) -> GrpcStdioServer<StdioService> {
        GrpcStdioServer::new(self.service.clone())
    }
}

/// One descriptor pointed elsewhere, with a duplicate of what it pointed at before.
#[derive(Debug)]
struct Redirect {
    target: RawFd,
    saved: Arc<File>,
    cloexec: bool,
}

impl Redirect {
    /// Makes `target` refer to what `to` refers to, saving a close-on-exec duplicate of
    /// the old `target` first. `target` keeps its own close-on-exec flag.
    ///
    /// # Safety
    ///
    /// `target` must be open and stay open for the life of the returned value.
    unsafe fn new(target: RawFd, to: BorrowedFd<'_>) -> io::Result<Redirect> {
        // SAFETY: the caller keeps `target` open; the borrow ends within this function.
        let current = unsafe { BorrowedFd::borrow_raw(target) };
        // `try_clone_to_owned` uses F_DUPFD_CLOEXEC: the duplicate never leaks into children.
        let saved = current.try_clone_to_owned()?;
        let cloexec = cloexec(current)?;
        dup2(to, target, cloexec)?;
        Ok(Redirect {
            target,
            saved: Arc::new(File::from(saved)),
            cloexec,
        })
    }
}

impl Drop for Redirect {
    fn drop(&mut self) {
        // Best effort: nothing sensible to do on failure, and the logger may be the very
        // stream that failed.
        let _ = dup2(self.saved.as_fd(), self.target, self.cloexec);
    }
}

/// Whether `fd` has FD_CLOEXEC set.
fn cloexec(fd: BorrowedFd<'_>) -> io::Result<bool> {
    // SAFETY: F_GETFD takes no pointer argument; `fd` is open.
    let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFD) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(flags & libc::FD_CLOEXEC != 0)
}

/// `dup2(from, to)`, retried on EINTR, then gives `to` the requested close-on-exec flag
/// (`dup2` always clears it).
fn dup2(from: BorrowedFd<'_>, to: RawFd, cloexec: bool) -> io::Result<()> {
    loop {
        // SAFETY: plain syscall on integer descriptors, no memory involved; `from` is
        // open and the callers own `to`.
        if unsafe { libc::dup2(from.as_raw_fd(), to) } >= 0 {
            break;
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
    if cloexec {
        // SAFETY: F_SETFD takes an integer argument; `to` was just made valid by dup2.
        if unsafe { libc::fcntl(to, libc::F_SETFD, libc::FD_CLOEXEC) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Creates a pipe, starts a thread forwarding its read end into `tx` as `channel` chunks,
/// and returns the write end.
fn start_reader(channel: Channel, tx: SenderSlot) -> io::Result<io::PipeWriter> {
    let (reader, writer) = io::pipe()?;
    std::thread::Builder::new()
        .name(format!(
            "intercom-{}",
            channel.as_str_name().to_ascii_lowercase()
        ))
        .spawn(move || forward(reader, channel, tx))?;
    Ok(writer)
}

/// Reads `source` until EOF (every write end closed), sending each read as one chunk.
/// Once the receiver is gone (stream consumed and cancelled, or service dropped) it keeps
/// draining and discards, so writers never block on a pipe nobody reads.
fn forward(mut source: io::PipeReader, channel: Channel, slot: SenderSlot) {
    loop {
        let mut data = vec![0; CHUNK_SIZE];
        match source.read(&mut data) {
            Ok(0) => return,
            Ok(n) => {
                data.truncate(n);
                let chunk = StdioData {
                    channel: channel as i32,
                    data,
                };
                let tx = slot.lock().unwrap_or_else(PoisonError::into_inner).clone();
                // A plain thread, outside any runtime: `blocking_send` is allowed here.
                if let Some(tx) = tx
                    && tx.blocking_send(chunk).is_err()
                {
                    // The stream was cancelled: discard until a host opens a new one.
                    let mut current = slot.lock().unwrap_or_else(PoisonError::into_inner);
                    if current.as_ref().is_some_and(|c| c.same_channel(&tx)) {
                        *current = None;
                    }
                }
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            // Not expected on a pipe; stop rather than spin.
            Err(_) => return,
        }
    }
}

/// A writer to the stderr the process had before [`StdioCapture::install`].
///
/// Each [`Write::write`] is a single `write(2)` on a duplicate of that descriptor, so a
/// log line up to `PIPE_BUF` (4 KiB on Linux) written with `write_all` is never
/// interleaved with other writers. Cheap to clone; usable as a
/// [`tracing_subscriber::fmt::MakeWriter`].
#[derive(Debug, Clone)]
pub struct OriginalStderr {
    file: Arc<File>,
}

impl Write for OriginalStderr {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&*self.file).write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for OriginalStderr {
    type Writer = OriginalStderr;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// The plugin-side `plugin.GRPCStdio` service.
///
/// Built by [`StdioCapture::service`] (serves captured output) or
/// [`StdioService::empty`]. Captured output is delivered once: the first `StreamStdio`
/// call takes it, and every later or concurrent call fails with `FAILED_PRECONDITION`,
/// even after the first stream was cancelled.
#[derive(Debug, Clone)]
pub struct StdioService {
    source: Source,
}

#[derive(Debug, Clone)]
enum Source {
    Empty,
    Captured(Arc<Captured>),
}

/// The capture's channel: the first receiver (output written before any host connected
/// waits in it), the readers' current sender, and whether a stream is open.
#[derive(Debug)]
struct Captured {
    first: Mutex<Option<mpsc::Receiver<StdioData>>>,
    sender: SenderSlot,
    active: std::sync::atomic::AtomicBool,
}

/// Where the reader threads send; `None` while nobody listens (they discard).
type SenderSlot = Arc<Mutex<Option<mpsc::Sender<StdioData>>>>;

impl StdioService {
    /// A service for when capture is off: every `StreamStdio` call gets a stream that
    /// sends nothing and stays open until the host cancels it.
    pub fn empty() -> Self {
        StdioService {
            source: Source::Empty,
        }
    }

    fn open(&self) -> Result<StdioStream, Status> {
        match &self.source {
            Source::Empty => Ok(StdioStream {
                rx: None,
                active: None,
            }),
            Source::Captured(captured) => {
                if captured
                    .active
                    .swap(true, std::sync::atomic::Ordering::SeqCst)
                {
                    return Err(Status::failed_precondition("stdio stream already consumed"));
                }
                let first = captured
                    .first
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .take();
                let rx = first.unwrap_or_else(|| {
                    // A host reconnected: output written while none was connected was
                    // discarded; from now on it flows to this stream.
                    let (tx, rx) = mpsc::channel(BUFFERED_CHUNKS);
                    *captured
                        .sender
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner) = Some(tx);
                    rx
                });
                tracing::debug!("host opened the stdio stream");
                Ok(StdioStream {
                    rx: Some(rx),
                    active: Some(captured.clone()),
                })
            }
        }
    }
}

#[tonic::async_trait]
impl GrpcStdio for StdioService {
    type StreamStdioStream = StdioStream;

    async fn stream_stdio(&self, _request: Request<()>) -> Result<Response<StdioStream>, Status> {
        self.open().map(Response::new)
    }
}

/// The response stream of [`StdioService`]: captured chunks in the order they were
/// read, then silence. Like go-plugin's, it never ends by itself; the host ends it by
/// cancelling the call, which discards whatever is still buffered.
#[derive(Debug)]
pub struct StdioStream {
    rx: Option<mpsc::Receiver<StdioData>>,
    /// Cleared when the host hangs up, so a host that reconnects (Kubernetes) can open a
    /// new stream.
    active: Option<Arc<Captured>>,
}

impl Drop for StdioStream {
    fn drop(&mut self) {
        if let Some(captured) = self.active.take() {
            captured
                .active
                .store(false, std::sync::atomic::Ordering::SeqCst);
        }
    }
}

impl futures::Stream for StdioStream {
    type Item = Result<StdioData, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let Some(rx) = self.rx.as_mut() else {
            // Nothing will ever arrive; stay open until dropped (no wake-up needed).
            return Poll::Pending;
        };
        match rx.poll_recv(cx) {
            Poll::Ready(Some(chunk)) => Poll::Ready(Some(Ok(chunk))),
            Poll::Ready(None) => {
                // Both readers saw EOF (capture dropped): keep the stream open regardless.
                self.rx = None;
                Poll::Pending
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Host side: opens `StreamStdio` on `client` and copies `STDOUT` chunks to `stdout` and
/// `STDERR` chunks to `stderr` until the stream ends.
///
/// Each chunk is written whole and the writer flushed before the next one is read, so a
/// slow writer slows the plugin down (go-plugin behaves the same). Events carry target
/// `intercom::stdio` and field `plugin`.
///
/// # Caveats
///
/// - A plugin without the service (`UNIMPLEMENTED`, or `UNAVAILABLE` on the first call)
///   is not an error: a warning is logged and `Ok(())` returned at once.
/// - Chunks on an unknown channel are dropped with a warning; a failing writer is
///   logged and the chunk dropped, and copying goes on (as go-plugin does).
/// - It does not return while the plugin keeps the stream open, which a go-plugin
///   plugin does until the host cancels: run it as a background task and drop or abort
///   it (or close the connection) on shutdown.
///
/// # Errors
///
/// The status of the opening call or of the stream, except the codes meaning "gone or
/// not supported" (`UNAVAILABLE`, `UNIMPLEMENTED`, `CANCELLED`), which end it with
/// `Ok(())`; an abrupt plugin exit may surface as another code (e.g. `UNKNOWN`).
///
/// # Cancel safety
///
/// Dropping the future cancels the RPC; a chunk being written at that moment may be
/// partly written, and chunks not yet received are lost (the plugin sends them once).
///
/// # Usage
///
/// ```no_run
/// # async fn demo(channel: tonic::transport::Channel) -> Result<(), tonic::Status> {
/// use intercom::proto::grpc_stdio_client::GrpcStdioClient;
///
/// let client = GrpcStdioClient::new(channel);
/// let task = tokio::spawn(async move {
///     intercom::stdio::pump(client, tokio::io::stdout(), tokio::io::stderr(), "kv").await
/// });
/// // ... on shutdown:
/// task.abort();
/// # Ok(())
/// # }
/// ```
pub async fn pump<T, O, E>(
    mut client: GrpcStdioClient<T>,
    mut stdout: O,
    mut stderr: E,
    plugin: &str,
) -> Result<(), Status>
where
    T: tonic::client::GrpcService<tonic::body::Body>,
    T::Error: Into<StdError>,
    T::ResponseBody: Body<Data = Bytes> + Send + 'static,
    <T::ResponseBody as Body>::Error: Into<StdError> + Send,
    O: AsyncWrite + Unpin + Send,
    E: AsyncWrite + Unpin + Send,
{
    let mut stream = match client.stream_stdio(()).await {
        Ok(response) => response.into_inner(),
        Err(status) if matches!(status.code(), Code::Unavailable | Code::Unimplemented) => {
            tracing::warn!(
                plugin,
                code = ?status.code(),
                message = status.message(),
                "plugin does not support stdio syncing"
            );
            return Ok(());
        }
        Err(status) => return Err(status),
    };
    loop {
        let chunk = match stream.message().await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => {
                tracing::debug!(plugin, "plugin ended the stdio stream");
                return Ok(());
            }
            Err(status)
                if matches!(
                    status.code(),
                    Code::Unavailable | Code::Unimplemented | Code::Cancelled
                ) =>
            {
                tracing::debug!(
                    plugin,
                    code = ?status.code(),
                    message = status.message(),
                    "stdio stream closed"
                );
                return Ok(());
            }
            Err(status) => return Err(status),
        };
        tracing::trace!(
            plugin,
            channel = chunk.channel,
            len = chunk.data.len(),
            "stdio data"
        );
        let written = match Channel::try_from(chunk.channel) {
            Ok(Channel::Stdout) => write_chunk(&mut stdout, &chunk.data).await,
            Ok(Channel::Stderr) => write_chunk(&mut stderr, &chunk.data).await,
            Ok(Channel::Invalid) | Err(_) => {
                tracing::warn!(
                    plugin,
                    channel = chunk.channel,
                    "unknown stdio channel, dropping chunk"
                );
                continue;
            }
        };
        if let Err(err) = written {
            tracing::warn!(
                error = &err as &dyn std::error::Error,
                plugin,
                channel = chunk.channel,
                "failed to copy plugin output"
            );
        }
    }
}

async fn write_chunk<W: AsyncWrite + Unpin>(writer: &mut W, data: &[u8]) -> io::Result<()> {
    writer.write_all(data).await?;
    writer.flush().await
}

#[cfg(test)]
mod tests {
    use std::error::Error;
    use std::io::{Seek, SeekFrom};
    use std::time::Duration;

    use futures::StreamExt;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;
    use tokio::task::JoinHandle;
    use tokio_stream::wrappers::TcpListenerStream;
    use tonic::transport::server::Router;
    use tonic::transport::{Endpoint, Server};

    use super::*;

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

    async fn spawn_server(
        router: Router,
    ) -> Result<(tonic::transport::Channel, JoinHandle<()>), Box<dyn Error + Send + Sync>> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let server = tokio::spawn(async move {
            let _ = router
                .serve_with_incoming(TcpListenerStream::new(listener))
                .await;
        });
        let channel = Endpoint::from_shared(format!("http://{addr}"))?
            .connect()
            .await?;
        Ok((channel, server))
    }

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

    /// Sends fixed chunks, then ends the stream.
    struct Fixed(Vec<StdioData>);

    #[tonic::async_trait]
    impl GrpcStdio for Fixed {
        type StreamStdioStream =
            futures::stream::Iter<std::vec::IntoIter<Result<StdioData, Status>>>;

        async fn stream_stdio(
            &self,
            _: Request<()>,
        ) -> Result<Response<Self::StreamStdioStream>, Status> {
            let items: Vec<_> = self.0.iter().cloned().map(Ok).collect();
            Ok(Response::new(futures::stream::iter(items)))
        }
    }

    fn data(channel: i32, text: &str) -> StdioData {
        StdioData {
            channel,
            data: text.as_bytes().to_vec(),
        }
    }

    #[tokio::test]
    async fn stdio_pump_routes_channels_and_drops_unknown_ones() -> TestResult {
        let chunks = vec![
            data(Channel::Stdout as i32, "out1 "),
            data(Channel::Stderr as i32, "err1 "),
            data(Channel::Invalid as i32, "invalid "),
            data(7, "seven "),
            data(Channel::Stdout as i32, "out2"),
            data(Channel::Stderr as i32, "err2"),
        ];
        let router = Server::builder().add_service(GrpcStdioServer::new(Fixed(chunks)));
        let (channel, server) = spawn_server(router).await?;
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let client = GrpcStdioClient::new(channel);
        tokio::time::timeout(WAIT, pump(client, &mut out, &mut err, "fixed")).await??;
        assert_eq!(out, b"out1 out2");
        assert_eq!(err, b"err1 err2");
        server.abort();
        Ok(())
    }

    #[tokio::test]
    async fn stdio_pump_without_the_service_returns_ok() -> TestResult {
        let (_reporter, health) = tonic_health::server::health_reporter();
        let (channel, server) = spawn_server(Server::builder().add_service(health)).await?;
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let client = GrpcStdioClient::new(channel);
        tokio::time::timeout(WAIT, pump(client, &mut out, &mut err, "old")).await??;
        assert!(out.is_empty() && err.is_empty());
        server.abort();
        Ok(())
    }

    #[tokio::test]
    async fn stdio_pump_copies_captured_output_end_to_end() -> TestResult {
        let (capture, out, err) = capture_on_temp_files()?;
        (&out).write_all(b"before the stream\n")?;
        let (channel, server) =
            spawn_server(Server::builder().add_service(capture.service())).await?;
        let (host_out, mut read_out) = tokio::io::duplex(64 * 1024);
        let (host_err, mut read_err) = tokio::io::duplex(64 * 1024);
        let client = GrpcStdioClient::new(channel);
        // Spawned: also proves the pump future is Send.
        let pumping = tokio::spawn(async move { pump(client, host_out, host_err, "e2e").await });
        let big = vec![b'z'; 5000];
        (&out).write_all(&big)?;
        (&err).write_all(b"to stderr\n")?;

        let mut got = vec![0; 18 + big.len()];
        tokio::time::timeout(WAIT, read_out.read_exact(&mut got)).await??;
        assert_eq!(got.get(..18), Some(&b"before the stream\n"[..]));
        assert_eq!(got.get(18..), Some(&big[..]));
        let mut got = vec![0; 10];
        tokio::time::timeout(WAIT, read_err.read_exact(&mut got)).await??;
        assert_eq!(got, b"to stderr\n");

        // The stream stays open; a second host is refused.
        assert!(!pumping.is_finished());
        let (channel2, server2) =
            spawn_server(Server::builder().add_service(capture.service())).await?;
        let status = GrpcStdioClient::new(channel2)
            .stream_stdio(())
            .await
            .err()
            .ok_or("second stream accepted")?;
        assert_eq!(status.code(), Code::FailedPrecondition);

        pumping.abort();
        server.abort();
        server2.abort();
        drop(capture);
        drop((out, err));
        Ok(())
    }

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
        if joined(&chunks, Channel::Stdout) != want_out
            || joined(&chunks, Channel::Stderr) != want_err
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
                "stdio::tests::stdio_real_fds_child",
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
}
