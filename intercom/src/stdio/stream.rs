//! [`StdioStream`]: the response stream of `StreamStdio`, which never ends by itself.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::mpsc;
use tonic::Status;

use super::service::Captured;
use crate::proto::StdioData;

/// The response stream of [`StdioService`]: captured chunks in the order they were
/// read, then silence. Like go-plugin's, it never ends by itself; the host ends it by
/// cancelling the call, which discards whatever is still buffered.
///
/// [`StdioService`]: super::StdioService
#[derive(Debug)]
pub(crate) struct StdioStream {
    pub(super) rx: Option<mpsc::Receiver<StdioData>>,
    /// Cleared when the host hangs up, so a host that reconnects (Kubernetes) can open a
    /// new stream.
    pub(super) active: Option<Arc<Captured>>,
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
