//! [`Io`], the one byte-stream type every connection becomes, and the [`ByteStream`]
//! trait a runtime's own streams implement.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

/// The byte streams gRPC runs over.
pub(crate) enum Io {
    Unix(UnixStream),
    Tcp(TcpStream),
    Mux(tokio_yamux::StreamHandle),
    TlsClient(Box<tokio_rustls::client::TlsStream<Io>>),
    TlsServer(Box<tokio_rustls::server::TlsStream<Io>>),
    /// Anything else a runtime dials through (e.g. a port-forward through the apiserver).
    Boxed(Pin<Box<dyn ByteStream>>),
}

/// A byte stream a runtime can hand the SDK as "the connection to the plugin".
pub(crate) trait ByteStream: AsyncRead + AsyncWrite + Send + 'static {}

impl<T: AsyncRead + AsyncWrite + Send + 'static> ByteStream for T {}

impl fmt::Debug for Io {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Unix(_) => "Io::Unix",
            Self::Tcp(_) => "Io::Tcp",
            Self::Mux(_) => "Io::Mux",
            Self::TlsClient(_) => "Io::TlsClient",
            Self::TlsServer(_) => "Io::TlsServer",
            Self::Boxed(_) => "Io::Boxed",
        })
    }
}

macro_rules! delegate {
    ($self:ident, $method:ident($($arg:expr),*)) => {
        match $self.get_mut() {
            Io::Unix(s) => Pin::new(s).$method($($arg),*),
            Io::Tcp(s) => Pin::new(s).$method($($arg),*),
            Io::Mux(s) => Pin::new(s).$method($($arg),*),
            Io::TlsClient(s) => Pin::new(&mut **s).$method($($arg),*),
            Io::TlsServer(s) => Pin::new(&mut **s).$method($($arg),*),
            Io::Boxed(s) => s.as_mut().$method($($arg),*),
        }
    };
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        delegate!(self, poll_read(cx, buf))
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, poll_write(cx, buf))
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, poll_flush(cx))
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, poll_shutdown(cx))
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, poll_write_vectored(cx, bufs))
    }
    fn is_write_vectored(&self) -> bool {
        match self {
            Io::Unix(s) => s.is_write_vectored(),
            Io::Tcp(s) => s.is_write_vectored(),
            Io::Mux(s) => s.is_write_vectored(),
            Io::TlsClient(s) => s.is_write_vectored(),
            Io::TlsServer(s) => s.is_write_vectored(),
            Io::Boxed(s) => s.is_write_vectored(),
        }
    }
}

impl tonic::transport::server::Connected for Io {
    type ConnectInfo = ();
    fn connect_info(&self) {}
}
