//! [`StdioCapture`]: the plugin side's redirection of fd 1 and 2 into the reader threads.

use std::io::{self, Write};
use std::os::fd::{AsFd, RawFd};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use super::reader::{SenderSlot, start_reader};
use super::redirect::Redirect;
use super::{BUFFERED_CHUNKS, OriginalStderr, StdioService};
use crate::proto::grpc_stdio_server::GrpcStdioServer;
use crate::proto::stdio_data::Channel;

/// Redirects the process's fd 1 and fd 2 into pipes whose content is served by
/// [`StdioService`], keeping a duplicate of the original stderr for the logger.
///
/// Dropping it points fd 1 and 2 back at the original streams (best effort). Data already
/// captured stays available to the service; output still buffered inside
/// `std::io::stdout()` goes to the original stdout.
#[derive(Debug)]
pub(crate) struct StdioCapture {
    // Field order is drop order: restore stdout, then stderr. Held for its `Drop`.
    _stdout: Redirect,
    stderr: Redirect,
    pub(super) service: StdioService,
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
    pub(crate) fn install() -> io::Result<StdioCapture> {
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
    pub(super) unsafe fn install_on(
        stdout_fd: RawFd,
        stderr_fd: RawFd,
    ) -> io::Result<StdioCapture> {
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
            service: StdioService::captured(rx, sender),
        })
    }

    /// A writer to the original stderr, for the plugin's own (hclog-format) logger.
    ///
    /// It implements [`tracing_subscriber::fmt::MakeWriter`] and [`std::io::Write`], and
    /// stays valid after the capture is dropped.
    pub(crate) fn original_stderr(&self) -> OriginalStderr {
        OriginalStderr {
            file: Arc::clone(&self.stderr.saved),
        }
    }

    /// The `plugin.GRPCStdio` service streaming the captured output.
    ///
    /// Every returned server shares the same data: the first `StreamStdio` call, on any of
    /// them, gets it all.
    pub(crate) fn service(&self) -> GrpcStdioServer<StdioService> {
        GrpcStdioServer::new(self.service.clone())
    }
}
