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
//!
//! [`StdioData`]: crate::proto::StdioData

mod capture;
mod original_stderr;
mod pump;
mod reader;
mod redirect;
mod service;
mod stream;

pub(crate) use capture::StdioCapture;
pub(crate) use original_stderr::OriginalStderr;
pub(crate) use pump::pump;
pub(crate) use service::StdioService;
pub(crate) use stream::StdioStream;

/// Largest chunk sent in one [`StdioData`](crate::proto::StdioData) message (go-plugin's
/// `grpcStdioBuffer`).
const CHUNK_SIZE: usize = 1024;

/// Chunks held in memory while no host is streaming, shared by stdout and stderr.
const BUFFERED_CHUNKS: usize = 64;

#[cfg(test)]
mod tests;
