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

use crate::sync::lock;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use hyper_util::rt::TokioIo;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::{ReceiverStream, UnboundedReceiverStream};
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};

use crate::handshake::Network;
use crate::mux::Mux;
use crate::proto::{ConnInfo, conn_info::Knock};
use crate::transport::{self, Io, ListenConfig, Listener, TlsPair};

/// How long a dialer waits for the peer's `ConnInfo` or knock ack (go-plugin: 5 s).
pub const BROKER_TIMEOUT: Duration = Duration::from_secs(5);

/// The notice a plugin sends (as broker id 0) on the stream of a host connection a newer
/// one replaces. Go hosts drop it like any message for an id nobody dials.
const REPLACED: &str = "intercom: replaced by a newer host connection";

/// How long a knock for an id nobody accepts yet waits for `accept` before it is refused.
const KNOCK_GRACE: Duration = Duration::from_secs(2);

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

/// One broker stream with one peer process (one side of one plugin connection).
#[derive(Clone)]
pub(crate) struct Session {
    inner: Arc<Inner>,
}

/// Extra connections between host and plugin; cheap to clone.
///
/// Both sides have one. Typical use, as in go-plugin's bidirectional example: the caller
/// picks `id = broker.next_id()`, serves a callback service on it with
/// [`accept_and_serve`](Self::accept_and_serve), sends `id` inside a request, and the
/// other side calls [`dial`](Self::dial)`(id)` to get a channel to that service.
#[derive(Clone)]
pub struct GrpcBroker(Kind);

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
        Self(Kind::One(session))
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
        (Self(Kind::Group(group.clone())), group)
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

/// The broker of a plugin with several replicas: one session per replica.
pub(crate) struct Group {
    next_id: AtomicU32,
    /// (replica name, its session).
    legs: Mutex<Vec<(String, Session)>>,
    /// Ids being accepted, and where their connections go.
    accepting: Mutex<HashMap<u32, mpsc::Sender<std::io::Result<Io>>>>,
    closed: CancellationToken,
}

#[cfg_attr(not(feature = "kubernetes"), allow(dead_code))]
impl Group {
    /// Adds a replica's session; it starts accepting every id already accepted.
    pub(crate) fn add(self: &Arc<Self>, name: String, session: Session) {
        let accepting: Vec<(u32, mpsc::Sender<std::io::Result<Io>>)> = lock(&self.accepting)
            .iter()
            .map(|(id, tx)| (*id, tx.clone()))
            .collect();
        for (id, tx) in accepting {
            if let Ok(listener) = session.accept(id) {
                tokio::spawn(forward(listener, tx));
            }
        }
        lock(&self.legs).push((name, session));
    }

    /// Removes a replica's session (its pod is gone).
    pub(crate) fn remove(&self, name: &str) {
        lock(&self.legs).retain(|(n, s)| {
            if n == name {
                s.close();
            }
            n != name
        });
    }

    fn accept(self: &Arc<Self>, id: u32) -> Result<BrokerListener, BrokerError> {
        if self.closed.is_cancelled() {
            return Err(BrokerError::Closed);
        }
        let (tx, rx) = mpsc::channel(8);
        {
            let mut accepting = lock(&self.accepting);
            if accepting.contains_key(&id) {
                return Err(BrokerError::AlreadyAccepting { id });
            }
            accepting.insert(id, tx.clone());
        }
        let legs: Vec<Session> = lock(&self.legs).iter().map(|(_, s)| s.clone()).collect();
        let mut forwarders = Vec::new();
        for session in legs {
            let listener = session.accept(id)?;
            forwarders.push(tokio::spawn(forward(listener, tx.clone())).abort_handle());
        }
        Ok(BrokerListener {
            incoming: ReceiverStream::new(rx),
            id,
            guard: ListenerGuard::Group(self.clone(), forwarders),
        })
    }

    /// Knocks on every replica at once; the first that serves `id` wins.
    async fn dial_io(&self, id: u32) -> Result<Io, DialIoError> {
        let legs: Vec<Session> = lock(&self.legs).iter().map(|(_, s)| s.clone()).collect();
        if legs.is_empty() {
            return Err(DialIoError::Broker(BrokerError::Closed));
        }
        let attempts = legs
            .into_iter()
            .map(|s| Box::pin(async move { s.dial_io(id).await }));
        match futures::future::select_ok(attempts).await {
            Ok((io, _rest)) => Ok(io),
            Err(last) => Err(last),
        }
    }
}

async fn forward(mut listener: BrokerListener, tx: mpsc::Sender<std::io::Result<Io>>) {
    while let Some(conn) = listener.next().await {
        if tx.send(conn.map(|c| c.0)).await.is_err() {
            break;
        }
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrpcBroker")
            .field("side", &self.inner.side)
            .field("multiplexed", &matches!(self.inner.mode, Mode::Mux(_)))
            .field("closed", &self.inner.closed().is_cancelled())
            .finish()
    }
}

impl Inner {
    fn closed(&self) -> CancellationToken {
        lock(&self.closed).clone()
    }
}

struct Inner {
    side: Side,
    next_id: AtomicU32,
    tx: Mutex<mpsc::UnboundedSender<ConnInfo>>,
    rx: Mutex<Option<mpsc::UnboundedReceiver<ConnInfo>>>,
    state: Mutex<State>,
    mode: Mode,
    tls: Option<TlsPair>,
    dial_lock: tokio::sync::Mutex<()>,
    /// Cancelled when the broker stream ends; a plugin that accepts a new host
    /// connection starts over with a fresh one.
    closed: Mutex<CancellationToken>,
    /// Signalled whenever an id starts accepting.
    registered: tokio::sync::Notify,
    /// Host side: the plugin said a newer host connection replaced this one.
    replaced: std::sync::atomic::AtomicBool,
}

#[derive(Default)]
struct State {
    /// ConnInfo (classic) or knock acks (mux) waiting for a dialer, or dialers waiting.
    infos: HashMap<u32, InfoSlot>,
    /// Addresses already received, so a reconnecting classic dial does not wait again.
    dialed: HashMap<u32, ConnInfo>,
    /// Mux: ids accepting streams.
    acceptors: HashMap<u32, Acceptor>,
    /// Mux: ids whose knock was acked; the next inbound streams belong to them, in order.
    knocked: VecDeque<u32>,
}

enum InfoSlot {
    Waiting(oneshot::Sender<ConnInfo>),
    Arrived(ConnInfo, Instant),
}

struct Acceptor {
    tx: mpsc::Sender<Io>,
    rx: Option<mpsc::Receiver<Io>>,
}

impl Acceptor {
    fn new() -> Self {
        let (tx, rx) = mpsc::channel(8);
        Self { tx, rx: Some(rx) }
    }
}

impl Session {
    pub(crate) fn new(side: Side, mode: Mode, tls: Option<TlsPair>) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Self {
            inner: Arc::new(Inner {
                side,
                next_id: AtomicU32::new(0),
                tx: Mutex::new(tx),
                rx: Mutex::new(Some(rx)),
                state: Mutex::new(State::default()),
                mode,
                tls,
                dial_lock: tokio::sync::Mutex::new(()),
                closed: Mutex::new(CancellationToken::new()),
                registered: tokio::sync::Notify::new(),
                replaced: std::sync::atomic::AtomicBool::new(false),
            }),
        }
    }

    fn next_id(&self) -> u32 {
        self.inner.next_id.fetch_add(1, Ordering::SeqCst) + 1
    }

    fn is_multiplexed(&self) -> bool {
        matches!(self.inner.mode, Mode::Mux(_))
    }

    fn accept(&self, id: u32) -> Result<BrokerListener, BrokerError> {
        if self.inner.closed().is_cancelled() {
            return Err(BrokerError::Closed);
        }
        let raw = match &self.inner.mode {
            Mode::Mux(_) => {
                let mut state = lock(&self.inner.state);
                let acceptor = state.acceptors.entry(id).or_insert_with(Acceptor::new);
                acceptor
                    .rx
                    .take()
                    .ok_or(BrokerError::AlreadyAccepting { id })?
            }
            Mode::Classic(listen) => {
                let listener =
                    Listener::bind(listen).map_err(|source| BrokerError::Listen { id, source })?;
                let address = listener.address().map_err(|source| BrokerError::Listen {
                    id,
                    source: transport::ListenError::Bind {
                        what: "broker listener address".into(),
                        source,
                    },
                })?;
                let info = ConnInfo {
                    service_id: id,
                    network: listener.network().to_string(),
                    address,
                    knock: None,
                };
                let (tx, rx) = mpsc::channel(8);
                let closed = self.inner.closed();
                tokio::spawn(async move {
                    loop {
                        tokio::select! {
                            io = listener.accept_retrying("broker listener") => {
                                if tx.send(io).await.is_err() { break }
                            }
                            () = tx.closed() => break,
                            () = closed.cancelled() => break,
                        }
                    }
                });
                self.send(info)?;
                rx
            }
        };
        self.inner.registered.notify_waiters();
        Ok(BrokerListener {
            incoming: tls_incoming(raw, self.inner.tls.clone()),
            id,
            guard: ListenerGuard::Session(self.clone()),
        })
    }

    pub(crate) fn close(&self) {
        self.inner.closed().cancel();
        let mut state = lock(&self.inner.state);
        state.acceptors.clear();
        state.infos.clear();
        state.knocked.clear();
    }

    pub(crate) fn closed_token(&self) -> CancellationToken {
        self.inner.closed()
    }

    /// Plugin side: tells the current host its connection is being replaced by a newer
    /// one (a reattaching host), so it does not reconnect and fight for the plugin.
    pub(crate) fn notify_replaced(&self) {
        let _ = self.send(ConnInfo {
            service_id: 0,
            network: String::new(),
            address: String::new(),
            knock: Some(Knock {
                knock: false,
                ack: true,
                error: REPLACED.into(),
            }),
        });
    }

    /// Host side: whether the plugin replaced this connection with a newer host's.
    #[cfg_attr(not(feature = "kubernetes"), allow(dead_code))]
    pub(crate) fn was_replaced(&self) -> bool {
        self.inner.replaced.load(Ordering::SeqCst)
    }

    /// Plugin side, on a new host connection: a fresh broker stream and state.
    fn restart(&self) -> mpsc::UnboundedReceiver<ConnInfo> {
        let (tx, rx) = mpsc::unbounded_channel();
        *lock(&self.inner.tx) = tx;
        {
            let mut closed = lock(&self.inner.closed);
            closed.cancel();
            *closed = CancellationToken::new();
        }
        let mut state = lock(&self.inner.state);
        *state = State::default();
        rx
    }

    fn send(&self, info: ConnInfo) -> Result<(), BrokerError> {
        lock(&self.inner.tx)
            .send(info)
            .map_err(|_| BrokerError::Closed)
    }

    async fn dial_io(&self, id: u32) -> Result<Io, DialIoError> {
        let io = match &self.inner.mode {
            Mode::Classic(_) => {
                let cached = lock(&self.inner.state).dialed.get(&id).cloned();
                let info = match cached {
                    Some(info) => info,
                    None => {
                        let info = self.wait_info(id, None).await?;
                        lock(&self.inner.state).dialed.insert(id, info.clone());
                        info
                    }
                };
                let network = match info.network.as_str() {
                    "unix" => Network::Unix,
                    "tcp" => Network::Tcp,
                    _ => {
                        return Err(DialIoError::Broker(BrokerError::UnknownNetwork {
                            id,
                            network: info.network,
                        }));
                    }
                };
                transport::dial(network, &info.address).await?
            }
            Mode::Mux(mux) => {
                let _serial = self.inner.dial_lock.lock().await;
                let knock = ConnInfo {
                    service_id: id,
                    network: String::new(),
                    address: String::new(),
                    knock: Some(Knock {
                        knock: true,
                        ack: false,
                        error: String::new(),
                    }),
                };
                let ack = self.wait_info(id, Some(knock)).await?;
                match ack.knock {
                    Some(k) if k.knock && k.ack && k.error.is_empty() => {}
                    Some(k) if !k.error.is_empty() => {
                        return Err(DialIoError::Broker(BrokerError::KnockRefused {
                            id,
                            reason: k.error,
                        }));
                    }
                    _ => {
                        return Err(DialIoError::Broker(BrokerError::KnockRefused {
                            id,
                            reason: "the peer answered the knock without an ack (handshake failed)"
                                .into(),
                        }));
                    }
                }
                let mux = mux.get().ok_or_else(|| {
                    std::io::Error::new(
                        std::io::ErrorKind::NotConnected,
                        "the host has not connected yet",
                    )
                })?;
                mux.open().await?
            }
        };
        Ok(transport::secure_client(self.inner.tls.as_ref(), io).await?)
    }

    /// Waits for the `ConnInfo` (or knock ack) for `id`, sending `first` once registered.
    async fn wait_info(&self, id: u32, first: Option<ConnInfo>) -> Result<ConnInfo, BrokerError> {
        let rx = {
            let mut state = lock(&self.inner.state);
            state.infos.retain(|_, slot| match slot {
                InfoSlot::Arrived(_, at) => at.elapsed() < BROKER_TIMEOUT,
                InfoSlot::Waiting(tx) => !tx.is_closed(),
            });
            if first.is_none()
                && let Some(InfoSlot::Arrived(..)) = state.infos.get(&id)
                && let Some(InfoSlot::Arrived(info, _)) = state.infos.remove(&id)
            {
                return Ok(info);
            }
            let (tx, rx) = oneshot::channel();
            state.infos.insert(id, InfoSlot::Waiting(tx));
            rx
        };
        if let Some(info) = first {
            self.send(info)?;
        }
        tokio::select! {
            res = tokio::time::timeout(BROKER_TIMEOUT, rx) => match res {
                Ok(Ok(info)) => Ok(info),
                Ok(Err(_)) => Err(BrokerError::Closed),
                Err(_) => {
                    lock(&self.inner.state).infos.remove(&id);
                    Err(BrokerError::Timeout { id, waited: BROKER_TIMEOUT })
                }
            },
            () = self.inner.closed().cancelled_owned() => Err(BrokerError::Closed),
        }
    }

    /// Routes one message from the peer's broker stream.
    pub(crate) fn receive(&self, info: ConnInfo) {
        if info.service_id == 0
            && info
                .knock
                .as_ref()
                .is_some_and(|k| !k.knock && k.error == REPLACED)
        {
            tracing::debug!("the plugin took a newer host connection; this one is closing");
            self.inner.replaced.store(true, Ordering::SeqCst);
            self.close();
            return;
        }
        let is_knock = info.knock.as_ref().is_some_and(|k| k.knock && !k.ack);
        if is_knock {
            self.answer_knock(info.service_id);
            return;
        }
        let mut state = lock(&self.inner.state);
        let id = info.service_id;
        match state.infos.remove(&id) {
            Some(InfoSlot::Waiting(tx)) => {
                if let Err(info) = tx.send(info) {
                    state
                        .infos
                        .insert(id, InfoSlot::Arrived(info, Instant::now()));
                }
            }
            Some(arrived @ InfoSlot::Arrived(..)) => {
                // One buffered message per id, extra ones are dropped (as go-plugin does).
                state.infos.insert(id, arrived);
            }
            None => {
                state
                    .infos
                    .insert(id, InfoSlot::Arrived(info, Instant::now()));
            }
        }
    }

    fn answer_knock(&self, id: u32) {
        if let Mode::Classic(_) = &self.inner.mode {
            self.send_ack(
                id,
                format!("broker id {id}: multiplexing is not enabled on this side"),
            );
            return;
        }
        if self.ack_if_accepting(id) {
            return;
        }
        // `accept_and_serve` may run a moment after the id was sent (go-plugin code often
        // spawns it): give registration a short grace period before refusing.
        let this = self.clone();
        tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + KNOCK_GRACE;
            loop {
                let registered = this.inner.registered.notified();
                if this.ack_if_accepting(id) {
                    return;
                }
                tokio::select! {
                    () = registered => {}
                    () = tokio::time::sleep_until(deadline) => break,
                    () = this.inner.closed().cancelled_owned() => return,
                }
            }
            this.send_ack(id, format!("no listener for id {id}"));
        });
    }

    /// Acks a knock for `id` if something accepts on it, queueing the next stream for it.
    fn ack_if_accepting(&self, id: u32) -> bool {
        {
            let mut state = lock(&self.inner.state);
            if !state.acceptors.contains_key(&id) {
                return false;
            }
            state.knocked.push_back(id);
        }
        self.send_ack(id, String::new());
        true
    }

    fn send_ack(&self, id: u32, error: String) {
        let _ = self.send(ConnInfo {
            service_id: id,
            network: String::new(),
            address: String::new(),
            knock: Some(Knock {
                knock: true,
                ack: true,
                error,
            }),
        });
    }

    /// Routes an inbound yamux stream: to the oldest knocked id, else back to the caller
    /// (the plugin's main server; the host drops it).
    pub(crate) fn route_inbound(&self, io: Io) -> Option<Io> {
        let mut state = lock(&self.inner.state);
        while let Some(id) = state.knocked.pop_front() {
            if let Some(acceptor) = state.acceptors.get(&id) {
                if let Err(err) = acceptor.tx.try_send(io) {
                    let io = match err {
                        mpsc::error::TrySendError::Full(io)
                        | mpsc::error::TrySendError::Closed(io) => io,
                    };
                    tracing::debug!(id, "dropping a brokered stream nobody accepts");
                    drop(io);
                }
                return None;
            }
        }
        Some(io)
    }

    /// Host side: runs the broker stream over `client` until it ends, then closes.
    pub(crate) async fn run_host(
        self,
        mut client: crate::proto::grpc_broker_client::GrpcBrokerClient<Channel>,
    ) {
        let Some(rx) = lock(&self.inner.rx).take() else {
            return;
        };
        let outgoing = UnboundedReceiverStream::new(rx);
        let closed = self.inner.closed();
        let stream = tokio::select! {
            res = client.start_stream(outgoing) => res,
            () = closed.cancelled() => return,
        };
        match stream {
            Ok(resp) => self.pump(resp.into_inner()).await,
            Err(status) => {
                tracing::debug!(code = ?status.code(), message = status.message(), "plugin has no broker stream; broker disabled");
                self.close();
            }
        }
    }

    async fn pump(self, mut incoming: impl Stream<Item = Result<ConnInfo, tonic::Status>> + Unpin) {
        loop {
            tokio::select! {
                msg = incoming.next() => match msg {
                    Some(Ok(info)) => self.receive(info),
                    Some(Err(status)) => {
                        tracing::debug!(code = ?status.code(), "broker stream ended");
                        break;
                    }
                    None => break,
                },
                () = self.inner.closed().cancelled_owned() => break,
            }
        }
        self.close();
    }

    /// The plugin's `GRPCBroker` service.
    pub(crate) fn service(
        &self,
    ) -> crate::proto::grpc_broker_server::GrpcBrokerServer<BrokerService> {
        crate::proto::grpc_broker_server::GrpcBrokerServer::new(BrokerService {
            broker: self.clone(),
        })
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
                        match tokio::time::timeout(Duration::from_secs(10), tls.accept(io)).await {
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
    incoming: ReceiverStream<std::io::Result<Io>>,
    id: u32,
    guard: ListenerGuard,
}

enum ListenerGuard {
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
            ListenerGuard::Session(s) => {
                lock(&s.inner.state).acceptors.remove(&self.id);
            }
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
pub struct BrokerConn(Io);

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
    id: u32,
    stop: Option<CancellationToken>,
    _task: tokio::task::JoinHandle<Result<(), BrokerError>>,
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

/// Plugin side of `plugin.GRPCBroker/StartStream`.
#[derive(Debug)]
pub(crate) struct BrokerService {
    broker: Session,
}

#[tonic::async_trait]
impl crate::proto::grpc_broker_server::GrpcBroker for BrokerService {
    type StartStreamStream =
        Pin<Box<dyn Stream<Item = Result<ConnInfo, tonic::Status>> + Send + 'static>>;

    async fn start_stream(
        &self,
        request: tonic::Request<tonic::Streaming<ConnInfo>>,
    ) -> Result<tonic::Response<Self::StartStreamStream>, tonic::Status> {
        let first = lock(&self.broker.inner.rx).take();
        // A second stream comes from a host that reconnected (Kubernetes): start over.
        let rx = first.unwrap_or_else(|| self.broker.restart());
        let broker = self.broker.clone();
        tokio::spawn(broker.pump(request.into_inner()));
        let out = UnboundedReceiverStream::new(rx).map(Ok);
        Ok(tonic::Response::new(Box::pin(out)))
    }
}
