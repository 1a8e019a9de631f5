//! `ConnectMode::PortForward`: a byte stream to a pod port through the apiserver.

use super::*;

/// A forwarded connection through the apiserver; keeps the forwarder alive.
///
/// Writes are buffered until flushed: each write to kube's stream becomes one WebSocket
/// message, so a yamux frame header and its body travel together (and, on a client with
/// Nagle's algorithm on, do not wait for a delayed ACK between them).
pub(super) struct Forwarded {
    stream: tokio::io::BufWriter<tokio::io::DuplexStream>,
    _forwarder: kube::api::Portforwarder,
}

impl tokio::io::AsyncRead for Forwarded {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Forwarded {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.stream).poll_write(cx, buf)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

pub(super) async fn port_forward(pods: &Api<Pod>, pod: &str, port: u16) -> std::io::Result<Io> {
    let mut forwarder = pods
        .portforward(pod, &[port])
        .await
        .map_err(std::io::Error::other)?;
    let stream = forwarder.take_stream(port).ok_or_else(|| {
        std::io::Error::other(format!("port-forward to {pod}:{port} gave no stream"))
    })?;
    Ok(Io::Boxed(Box::pin(Forwarded {
        stream: tokio::io::BufWriter::with_capacity(64 * 1024, stream),
        _forwarder: forwarder,
    })))
}
