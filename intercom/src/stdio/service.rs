//! [`StdioService`]: the plugin-side `plugin.GRPCStdio` service and the state it shares
//! with the capture.

use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::mpsc;
use tonic::{Request, Response, Status};

use super::reader::SenderSlot;
use super::{BUFFERED_CHUNKS, StdioStream};
use crate::proto::StdioData;
use crate::proto::grpc_stdio_server::GrpcStdio;

/// The plugin-side `plugin.GRPCStdio` service.
///
/// Built by [`StdioCapture::service`] (serves captured output) or
/// [`StdioService::empty`]. Captured output is delivered once: the first `StreamStdio`
/// call takes it, and every later or concurrent call fails with `FAILED_PRECONDITION`,
/// even after the first stream was cancelled.
///
/// [`StdioCapture::service`]: super::StdioCapture::service
#[derive(Debug, Clone)]
pub(crate) struct StdioService {
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
pub(super) struct Captured {
    first: Mutex<Option<mpsc::Receiver<StdioData>>>,
    sender: SenderSlot,
    pub(super) active: std::sync::atomic::AtomicBool,
}

impl StdioService {
    /// A service for when capture is off: every `StreamStdio` call gets a stream that
    /// sends nothing and stays open until the host cancels it.
    pub(crate) fn empty() -> Self {
        StdioService {
            source: Source::Empty,
        }
    }

    /// The service of a capture: `first` holds what was written before any host
    /// connected, `sender` is where the reader threads send.
    pub(super) fn captured(first: mpsc::Receiver<StdioData>, sender: SenderSlot) -> Self {
        StdioService {
            source: Source::Captured(Arc::new(Captured {
                first: Mutex::new(Some(first)),
                sender,
                active: std::sync::atomic::AtomicBool::new(false),
            })),
        }
    }

    /// Opens the stream a `StreamStdio` call gets, or refuses a second one.
    pub(super) fn open(&self) -> Result<StdioStream, Status> {
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
