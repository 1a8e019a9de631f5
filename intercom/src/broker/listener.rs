//! What an accepting side holds: the listener of one broker id, its connections, the
//! server running on it, and the TLS step in front of them.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

use super::{BrokerError, Group, Session};
use crate::sync::lock;
use crate::transport::{Io, TlsPair};

/// How long a brokered connection's TLS handshake may take.
const TLS_ACCEPT_TIMEOUT: Duration = Duration::from_secs(10);

/// Wraps raw accepted connections in TLS (when on), handshaking each in its own task so
/// one slow or hostile peer cannot stall the others; failed handshakes are dropped.
pub(crate) fn tls_incoming(
    mut raw: mpsc::Receiver<Io>,
    tls: Option<TlsPair>,
) -> ReceiverStream<std::io::Result<Io>> {
    let (tx, rx) = mpsc::channel(8);
    tokio::spawn(async move {
        while let Some(io) = raw.recv().await {
            match &tls {
                None => {
                    if tx.send(Ok(io)).await.is_err() {
                        break;
                    }
                }
                Some(tls) => {
                    let tls = tls.clone();
                    let tx = tx.clone();
                    tokio::spawn(async move {
                        match tokio::time::timeout(TLS_ACCEPT_TIMEOUT, tls.accept(io)).await {
                            Ok(Ok(io)) => {
                                let _ = tx.send(Ok(io)).await;
                            }
                            Ok(Err(err)) => tracing::warn!(
                                error = &err as &dyn std::error::Error,
                                "refused a connection: TLS handshake failed (not the pinned peer certificate?)"
                            ),
                            Err(_) => {
                                tracing::warn!("refused a connection: TLS handshake timed out")
                            }
                        }
                    });
                }
            }
        }
    });
    ReceiverStream::new(rx)
}

/// Connections accepted on one broker id; a `Stream` of them, fit for
/// `tonic::transport::Server::serve_with_incoming`.
pub struct BrokerListener {
    pub(super) incoming: ReceiverStream<std::io::Result<Io>>,
    pub(super) id: u32,
    pub(super) guard: ListenerGuard,
}

pub(super) enum ListenerGuard {
    /// Unregisters the id from the session on drop.
    Session(Session),
    /// Forwarders from each replica's listener; aborted on drop.
    Group(Arc<Group>, Vec<tokio::task::AbortHandle>),
}

impl fmt::Debug for BrokerListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BrokerListener")
            .field("id", &self.id)
            .finish()
    }
}

impl BrokerListener {
    /// The broker id.
    pub fn id(&self) -> u32 {
        self.id
    }
}

impl Stream for BrokerListener {
    type Item = std::io::Result<BrokerConn>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.incoming)
            .poll_next(cx)
            .map(|o| o.map(|r| r.map(BrokerConn)))
    }
}

impl Drop for BrokerListener {
    fn drop(&mut self) {
        match &self.guard {
            ListenerGuard::Session(s) => s.unaccept(self.id),
            ListenerGuard::Group(group, forwarders) => {
                lock(&group.accepting).remove(&self.id);
                for f in forwarders {
                    f.abort();
                }
            }
        }
    }
}

/// One brokered connection (an opaque byte stream).
#[derive(Debug)]
pub struct BrokerConn(pub(super) Io);

impl tokio::io::AsyncRead for BrokerConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for BrokerConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl tonic::transport::server::Connected for BrokerConn {
    type ConnectInfo = ();
    fn connect_info(&self) {}
}

/// A service served on a broker id; stops when dropped, [`stop`](Self::stop)ped, or the
/// broker closes.
#[derive(Debug)]
#[must_use = "the brokered server stops when this handle is dropped"]
pub struct BrokerServer {
    pub(super) id: u32,
    pub(super) stop: Option<CancellationToken>,
    pub(super) _task: tokio::task::JoinHandle<Result<(), BrokerError>>,
}

impl BrokerServer {
    /// The broker id it serves on.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Stops serving.
    pub fn stop(self) {
        drop(self);
    }

    /// Keeps serving until the broker closes, detached from this handle.
    pub fn detach(mut self) {
        self.stop.take();
    }
}

impl Drop for BrokerServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            stop.cancel();
        }
    }
}
