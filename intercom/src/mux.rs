//! One yamux session over the single host→plugin socket (go-plugin's
//! `PLUGIN_MULTIPLEX_GRPC` mode): the host is the yamux client, the plugin the server,
//! and every gRPC connection, main or brokered, is a stream of it.

use std::io;
use std::sync::Arc;

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::transport::Io;

/// Which end of the session this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// The host: yamux client (odd stream ids).
    Client,
    /// The plugin: yamux server (even stream ids).
    Server,
}

/// A running yamux session: open outbound streams; inbound ones arrive on the receiver
/// returned by [`Mux::start`].
#[derive(Clone)]
pub(crate) struct Mux {
    control: tokio_yamux::Control,
    closed: CancellationToken,
    _driver: Arc<DriverGuard>,
}

impl std::fmt::Debug for Mux {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mux")
            .field("closed", &self.closed.is_cancelled())
            .finish()
    }
}

struct DriverGuard(tokio::task::AbortHandle);

impl Drop for DriverGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Mux {
    /// Starts a session over `io`. Needs a tokio runtime.
    pub(crate) fn start(io: Io, role: Role) -> (Mux, mpsc::Receiver<Io>) {
        let config = tokio_yamux::Config::default();
        let mut session = match role {
            Role::Client => tokio_yamux::Session::new_client(io, config),
            Role::Server => tokio_yamux::Session::new_server(io, config),
        };
        let control = session.control();
        let closed = CancellationToken::new();
        let (tx, rx) = mpsc::channel(16);
        let done = closed.clone();
        let driver = tokio::spawn(async move {
            loop {
                tokio::select! {
                    next = session.next() => match next {
                        Some(Ok(stream)) => {
                            // Wait for room rather than drop: the broker routes inbound
                            // streams by their order, so a lost one would shift the rest.
                            // A dropped receiver drops the stream (the peer sees a reset).
                            tokio::select! {
                                sent = tx.send(Io::Mux(stream)) => drop(sent),
                                () = done.cancelled() => {
                                    let _ = std::future::poll_fn(|cx| std::task::Poll::Ready(session.shutdown(cx))).await;
                                    break;
                                }
                            }
                        }
                        Some(Err(err)) => {
                            tracing::debug!(error = &err as &dyn std::error::Error, "yamux session ended");
                            break;
                        }
                        None => break,
                    },
                    () = done.cancelled() => {
                        let _ = std::future::poll_fn(|cx| std::task::Poll::Ready(session.shutdown(cx))).await;
                        break;
                    }
                }
            }
            done.cancel();
        });
        let mux = Mux {
            control,
            closed,
            _driver: Arc::new(DriverGuard(driver.abort_handle())),
        };
        (mux, rx)
    }

    /// Opens a new outbound stream.
    pub(crate) async fn open(&self) -> io::Result<Io> {
        if self.closed.is_cancelled() {
            return Err(io::Error::new(
                io::ErrorKind::NotConnected,
                "the multiplexed connection to the plugin is closed",
            ));
        }
        let mut control = self.control.clone();
        let open = control.open_stream();
        tokio::select! {
            res = open => res.map(Io::Mux).map_err(|e| io::Error::new(io::ErrorKind::ConnectionAborted, format!("failed to open a yamux stream: {e:?}"))),
            () = self.closed.cancelled() => Err(io::Error::new(io::ErrorKind::NotConnected, "the multiplexed connection to the plugin is closed")),
        }
    }

    /// Ends the session.
    pub(crate) fn close(&self) {
        self.closed.cancel();
    }

    /// Whether the session has ended.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.is_cancelled()
    }

    /// Resolves when the session has ended.
    pub(crate) async fn closed(&self) {
        self.closed.cancelled().await;
    }

    /// Whether `other` is a handle to this same session.
    pub(crate) fn same_session(&self, other: &Mux) -> bool {
        Arc::ptr_eq(&self._driver, &other._driver)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn streams_both_ways_over_one_socket() {
        let (a, b) = tokio::net::UnixStream::pair().unwrap();
        let (client, mut client_in) = Mux::start(Io::Unix(a), Role::Client);
        let (server, mut server_in) = Mux::start(Io::Unix(b), Role::Server);

        let mut s = client.open().await.unwrap();
        s.write_all(b"ping").await.unwrap();
        s.flush().await.unwrap();
        let mut inbound = server_in.recv().await.unwrap();
        let mut buf = [0u8; 4];
        inbound.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");

        let mut back = server.open().await.unwrap();
        back.write_all(b"pong").await.unwrap();
        back.flush().await.unwrap();
        let mut got = client_in.recv().await.unwrap();
        got.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"pong");

        client.close();
        tokio::time::timeout(std::time::Duration::from_secs(5), server.closed.cancelled())
            .await
            .expect("closing one side ends the other");
        assert!(client.open().await.is_err());
    }
}
