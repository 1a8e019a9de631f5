//! The plugin's stdout/stderr sinks, shared by every replica.

use super::*;

pub(super) async fn pump_shared_stdio(
    channel: tonic::transport::Channel,
    stdout: Arc<tokio::sync::Mutex<Option<Writer>>>,
    stderr: Arc<tokio::sync::Mutex<Option<Writer>>>,
    name: String,
    closed: CancellationToken,
) {
    let out = SharedWriter(stdout);
    let err = SharedWriter(stderr);
    pump_stdio(channel, Box::new(out), Box::new(err), name, closed).await;
}

/// Several replicas writing into one optional writer.
pub(super) struct SharedWriter(Arc<tokio::sync::Mutex<Option<Writer>>>);

impl tokio::io::AsyncWrite for SharedWriter {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let Ok(mut guard) = self.0.try_lock() else {
            cx.waker().wake_by_ref();
            return std::task::Poll::Pending;
        };
        match guard.as_mut() {
            Some(w) => std::pin::Pin::new(w).poll_write(cx, buf),
            None => std::task::Poll::Ready(Ok(buf.len())),
        }
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let Ok(mut guard) = self.0.try_lock() else {
            cx.waker().wake_by_ref();
            return std::task::Poll::Pending;
        };
        match guard.as_mut() {
            Some(w) => std::pin::Pin::new(w).poll_flush(cx),
            None => std::task::Poll::Ready(Ok(())),
        }
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}
