//! [`sniff`]: telling yamux from TLS from plaintext HTTP/2 by a connection's first byte.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::Io;

/// Reads the first byte of a fresh connection (what the peer speaks first tells a yamux
/// session from TLS from plaintext HTTP/2) and gives back a stream that still starts with
/// it. `None`: the peer closed without sending anything (e.g. a TCP probe).
pub(crate) async fn sniff(mut io: Io) -> io::Result<Option<(u8, Io)>> {
    use tokio::io::AsyncReadExt;
    let mut first = [0u8; 1];
    if io.read(&mut first).await? == 0 {
        return Ok(None);
    }
    Ok(Some((
        first[0],
        Io::Boxed(Box::pin(Prefixed {
            prefix: Some(first[0]),
            inner: io,
        })),
    )))
}

/// A stream with one byte put back in front.
struct Prefixed {
    prefix: Option<u8>,
    inner: Io,
}

impl AsyncRead for Prefixed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(b) = self.prefix.take() {
            if buf.remaining() == 0 {
                self.prefix = Some(b);
                return Poll::Ready(Ok(()));
            }
            buf.put_slice(&[b]);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The first byte of a yamux frame (protocol version 0).
pub(crate) const YAMUX_FIRST_BYTE: u8 = 0;
/// The first byte of a TLS record (handshake).
pub(crate) const TLS_FIRST_BYTE: u8 = 0x16;
