//! The broker: extra gRPC connections between host and plugin, in either direction,
//! identified by ids the application passes inside its own messages (go-plugin's
//! `GRPCBroker`).
//!
//! Two transports, chosen at connect time:
//! - **multiplexed** (the default, and the only one that works in Kubernetes): every
//!   brokered connection is a new yamux stream of the one host→plugin socket, announced
//!   by a knock/ack exchange on the broker stream (`PLUGIN_MULTIPLEX_GRPC`);
//! - **classic**: the accepting side opens a listener per id and sends its address
//!   (`ConnInfo`) to the dialer. Kept for go-plugin peers that do not multiplex.

mod group;
mod knocks;
mod listener;
mod session;

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};

pub(crate) use group::Group;
pub(crate) use listener::tls_incoming;
pub use listener::{BrokerConn, BrokerListener, BrokerServer};
pub(crate) use session::Session;

use crate::mux::Mux;
use crate::plugin_exit::ExitWatch;
use crate::sync::lock;
use crate::transport::{self, Io, ListenConfig};

/// How long a dialer waits for the peer's `ConnInfo` or knock ack (go-plugin: 5 s).
pub const BROKER_TIMEOUT: Duration = Duration::from_secs(5);

/// Failures of broker operations.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BrokerError {
    /// The broker is closed (the connection to the peer ended or `close` was called).
    #[error("the broker is closed: the connection to the peer has ended")]
    Closed,
    /// `accept` was called twice for one id.
    #[error("failed to accept on broker id {id}: something is already accepting on it")]
    AlreadyAccepting {
        /// The id.
        id: u32,
    },
    /// The peer did not announce a connection for the id in time.
    #[error(
        "timeout waiting for connection info for broker id {id} (waited {waited:?}); did the peer call accept/accept_and_serve for this id?"
    )]
    Timeout {
        /// The id.
        id: u32,
        /// How long we waited.
        waited: Duration,
    },
    /// The peer refused the knock.
    #[error("failed to knock for broker id {id}: {reason}")]
    KnockRefused {
        /// The id.
        id: u32,
        /// The peer's reason.
        reason: String,
    },
    /// The peer announced an address we cannot dial.
    #[error("unknown address type {network:?} for broker id {id}")]
    UnknownNetwork {
        /// The id.
        id: u32,
        /// The network the peer sent.
        network: String,
    },
    /// Opening a classic listener failed.
    #[error("failed to open a listener for broker id {id}")]
    Listen {
        /// The id.
        id: u32,
        /// Why.
        #[source]
        source: transport::ListenError,
    },
    /// Opening the connection (socket, stream or TLS handshake) failed.
    #[error("failed to connect to broker id {id}")]
    Connect {
        /// The id.
        id: u32,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Starting gRPC over the connection failed.
    #[error("failed to start gRPC on broker id {id}")]
    Dial {
        /// The id.
        id: u32,
        /// Why.
        #[source]
        source: tonic::transport::Error,
    },
    /// Serving failed.
    #[error("failed to serve broker id {id}")]
    Serve {
        /// The id.
        id: u32,
        /// Why.
        #[source]
        source: tonic::transport::Error,
    },
}

/// Which side of the plugin connection a broker lives on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    Host,
    Plugin,
}

/// The current yamux session of a multiplexed connection; the plugin replaces it when a
/// host reconnects.
#[derive(Clone, Debug, Default)]
pub(crate) struct MuxSlot(Arc<Mutex<Option<Mux>>>);

impl MuxSlot {
    pub(crate) fn with(mux: Mux) -> Self {
        Self(Arc::new(Mutex::new(Some(mux))))
    }

    /// Installs `mux`, returning the session it replaces.
    pub(crate) fn replace(&self, mux: Mux) -> Option<Mux> {
        lock(&self.0).replace(mux)
    }

    pub(crate) fn get(&self) -> Option<Mux> {
        lock(&self.0).clone()
    }
}

#[derive(Clone, Debug)]
pub(crate) enum Mode {
    Classic(ListenConfig),
    /// The session is set once the plugin has accepted the host's socket (services are
    /// registered, with the broker, before that).
    Mux(MuxSlot),
}

/// Extra connections between host and plugin; cheap to clone.
///
/// Both sides have one. Typical use, as in go-plugin's bidirectional example: the caller
/// picks `id = broker.next_id()`, serves a callback service on it with
/// [`accept_and_serve`](Self::accept_and_serve), sends `id` inside a request, and the
/// other side calls [`dial`](Self::dial)`(id)` to get a channel to that service.
#[derive(Clone)]
pub struct GrpcBroker(Kind, ExitWatch);

#[derive(Clone)]
enum Kind {
    /// One plugin process.
    One(Session),
    /// Several replicas of one plugin (Kubernetes): accepts register on every replica's
    /// session, dials try them all.
    Group(Arc<Group>),
}

impl fmt::Debug for GrpcBroker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Kind::One(s) => s.fmt(f),
            Kind::Group(g) => f
                .debug_struct("GrpcBroker")
                .field("replicas", &lock(&g.legs).len())
                .field("closed", &g.closed.is_cancelled())
                .finish(),
        }
    }
}

impl From<Session> for GrpcBroker {
    fn from(session: Session) -> Self {
        Self(Kind::One(session), ExitWatch::default())
    }
}

impl GrpcBroker {
    /// A broker over several replicas' sessions (legs are added as replicas connect).
    #[cfg_attr(not(feature = "kubernetes"), allow(dead_code))]
    pub(crate) fn group() -> (Self, Arc<Group>) {
        let group = Arc::new(Group {
            next_id: AtomicU32::new(0),
            legs: Mutex::new(Vec::new()),
            accepting: Mutex::new(HashMap::new()),
            closed: CancellationToken::new(),
        });
        (
            Self(Kind::Group(group.clone()), ExitWatch::default()),
            group,
        )
    }

    /// Where the host records how the plugin process ended, for the errors of calls
    /// that fail because of it.
    pub(crate) fn exit_watch(&self) -> &ExitWatch {
        &self.1
    }

    /// A fresh id, unique on this side (the first is 1; the two sides count separately).
    pub fn next_id(&self) -> u32 {
        match &self.0 {
            Kind::One(s) => s.next_id(),
            Kind::Group(g) => g.next_id.fetch_add(1, Ordering::SeqCst) + 1,
        }
    }

    /// Whether brokered connections ride the main connection (multiplexed mode).
    pub fn is_multiplexed(&self) -> bool {
        match &self.0 {
            Kind::One(s) => s.is_multiplexed(),
            Kind::Group(_) => true,
        }
    }

    /// Starts accepting connections for `id`; the returned listener yields them
    /// (already through TLS when AutoMTLS is on). Registration is immediate, so the id can
    /// be sent to the peer as soon as this returns.
    ///
    /// # Errors
    /// [`BrokerError::Closed`], [`BrokerError::AlreadyAccepting`], or (classic mode) a
    /// failure to bind the per-id listener.
    pub fn accept(&self, id: u32) -> Result<BrokerListener, BrokerError> {
        match &self.0 {
            Kind::One(s) => s.accept(id),
            Kind::Group(g) => g.accept(id),
        }
    }

    /// Serves `routes` on `id` in a background task until the returned handle is dropped
    /// or stopped, or the broker closes. Registration is immediate (see [`accept`](Self::accept)).
    ///
    /// ```no_run
    /// # async fn f(broker: intercom::GrpcBroker, routes: intercom::tonic::service::Routes) -> Result<(), intercom::BrokerError> {
    /// let id = broker.next_id();
    /// let server = broker.accept_and_serve(id, routes)?;
    /// // ... send `id` to the peer in a request and wait for the reply ...
    /// server.stop();
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`accept`](Self::accept).
    pub fn accept_and_serve(
        &self,
        id: u32,
        routes: tonic::service::Routes,
    ) -> Result<BrokerServer, BrokerError> {
        let listener = self.accept(id)?;
        let closed = self.closed_token();
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            // Stopping is graceful (GOAWAY, in-flight calls finish) and reaches the
            // connections already open, not only the accept loop.
            let signal = async move {
                tokio::select! {
                    () = closed.cancelled() => {}
                    () = stopped.cancelled() => {}
                }
            };
            tonic::transport::Server::builder()
                .add_routes(routes)
                .serve_with_incoming_shutdown(listener, signal)
                .await
                .map_err(|source| BrokerError::Serve { id, source })
        });
        Ok(BrokerServer {
            id,
            stop: Some(stop),
            _task: task,
        })
    }

    /// Connects to the service the peer serves on `id`.
    ///
    /// Waits up to [`BROKER_TIMEOUT`] for the peer to announce `id` (classic) or to
    /// acknowledge the knock (multiplexed). The channel re-dials the same way if the
    /// connection drops.
    ///
    /// # Errors
    /// [`BrokerError::Timeout`], [`BrokerError::KnockRefused`], [`BrokerError::Closed`],
    /// or [`BrokerError::Dial`].
    pub async fn dial(&self, id: u32) -> Result<Channel, BrokerError> {
        if self.is_closed() {
            return Err(BrokerError::Closed);
        }
        let first = match self.dial_io(id).await {
            Ok(io) => io,
            Err(DialIoError::Broker(e)) => return Err(e),
            Err(DialIoError::Io(source)) => return Err(BrokerError::Connect { id, source }),
        };
        let first = Arc::new(Mutex::new(Some(first)));
        let broker = self.clone();
        let connector = tower::service_fn(move |_: http::Uri| {
            let first = lock(&first).take();
            let broker = broker.clone();
            async move {
                match first {
                    Some(io) => Ok(TokioIo::new(io)),
                    None => broker.dial_io(id).await.map(TokioIo::new),
                }
            }
        });
        endpoint()
            .connect_with_connector(connector)
            .await
            .map_err(|source| BrokerError::Dial { id, source })
    }

    /// Closes the broker: pending and future accepts and dials fail, brokered servers stop.
    pub fn close(&self) {
        match &self.0 {
            Kind::One(s) => s.close(),
            Kind::Group(g) => {
                g.closed.cancel();
                for leg in lock(&g.legs).drain(..) {
                    leg.1.close();
                }
            }
        }
    }

    /// Whether [`close`](Self::close) was called or the connection ended.
    pub fn is_closed(&self) -> bool {
        self.closed_token().is_cancelled()
    }

    pub(crate) fn closed_token(&self) -> CancellationToken {
        match &self.0 {
            Kind::One(s) => s.closed_token(),
            Kind::Group(g) => g.closed.clone(),
        }
    }

    async fn dial_io(&self, id: u32) -> Result<Io, DialIoError> {
        match &self.0 {
            Kind::One(s) => s.dial_io(id).await,
            Kind::Group(g) => g.dial_io(id).await,
        }
    }
}

enum DialIoError {
    Broker(BrokerError),
    Io(std::io::Error),
}

impl From<std::io::Error> for DialIoError {
    fn from(e: std::io::Error) -> Self {
        Self::Io(e)
    }
}

impl From<BrokerError> for DialIoError {
    fn from(e: BrokerError) -> Self {
        Self::Broker(e)
    }
}

impl From<DialIoError> for Box<dyn std::error::Error + Send + Sync> {
    fn from(e: DialIoError) -> Self {
        match e {
            DialIoError::Broker(b) => Box::new(b),
            DialIoError::Io(io) => Box::new(io),
        }
    }
}

/// The endpoint every intercom channel uses (go-plugin dials with target "unused").
pub(crate) fn endpoint() -> Endpoint {
    Endpoint::from_static("http://localhost")
        .connect_timeout(BROKER_TIMEOUT)
        .tcp_nodelay(true)
}

#[cfg(test)]
mod routing_tests;
