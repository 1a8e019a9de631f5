//! One broker stream with one peer process: classic `ConnInfo` exchange, or the
//! multiplexed knock protocol (routing bookkept in [`knocks`](super::knocks)).

use std::collections::HashMap;
use std::fmt;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::UnboundedReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use super::knocks::{self, Acked, Sent};
use super::listener::{BrokerListener, ListenerGuard, tls_incoming};
use super::{BROKER_TIMEOUT, BrokerError, DialIoError, Mode, MuxSlot, Side};
use crate::handshake::Network;
use crate::proto::{ConnInfo, conn_info::Knock};
use crate::sync::lock;
use crate::transport::{self, Io, Listener};

/// The notice a plugin sends (as broker id 0) on the stream of a host connection a newer
/// one replaces. Go hosts drop it like any message for an id nobody dials.
const REPLACED: &str = "intercom: replaced by a newer host connection";

/// How long a knock for an id nobody accepts yet waits for `accept` before it is refused.
const KNOCK_GRACE: Duration = Duration::from_secs(2);

/// At most this many `ConnInfo`s nobody has dialled yet are kept (each for
/// [`BROKER_TIMEOUT`]), and this many addresses of dialled ids are remembered.
const MAX_STORED_INFOS: usize = 256;

/// One broker stream with one peer process (one side of one plugin connection).
#[derive(Clone)]
pub(crate) struct Session {
    inner: Arc<Inner>,
}

struct Inner {
    side: Side,
    next_id: AtomicU32,
    tx: Mutex<mpsc::UnboundedSender<ConnInfo>>,
    rx: Mutex<Option<mpsc::UnboundedReceiver<ConnInfo>>>,
    state: Mutex<State>,
    mode: Mode,
    tls: Option<crate::transport::TlsPair>,
    dial_lock: tokio::sync::Mutex<()>,
    /// Cancelled when the broker stream ends; a plugin that accepts a new host
    /// connection starts over with a fresh one.
    closed: Mutex<CancellationToken>,
    /// Signalled whenever an id starts accepting.
    registered: tokio::sync::Notify,
    /// Host side: the plugin said a newer host connection replaced this one.
    replaced: AtomicBool,
}

/// What a multiplexed dial gets back for its knock.
enum Answer {
    /// Acked: the stream opened for it (in ack order).
    Stream(std::io::Result<Io>),
    /// Refused, with the peer's reason.
    Refused(String),
}

#[derive(Default)]
struct State {
    /// Classic: ConnInfo waiting for a dialer, or dialers waiting.
    infos: HashMap<u32, InfoSlot>,
    /// Classic: addresses already received, so a reconnecting dial does not wait again.
    dialed: HashMap<u32, ConnInfo>,
    /// Mux: ids accepting streams.
    acceptors: HashMap<u32, Acceptor>,
    /// Mux, accepting: ids whose knock was acked; each owns the next inbound stream.
    acked: Acked,
    /// Mux, accepting: knocks waiting for their id to be accepted.
    in_grace: usize,
    /// Mux, dialing: knocks sent, not yet answered.
    sent: Sent<oneshot::Sender<Answer>>,
    /// Mux, dialing: opens streams for acks, one at a time, in ack order.
    opener: Option<mpsc::UnboundedSender<oneshot::Sender<Answer>>>,
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

fn knock_message(id: u32, ack: bool, error: String) -> ConnInfo {
    ConnInfo {
        service_id: id,
        network: String::new(),
        address: String::new(),
        knock: Some(Knock {
            knock: true,
            ack,
            error,
        }),
    }
}

impl Session {
    pub(crate) fn new(side: Side, mode: Mode, tls: Option<crate::transport::TlsPair>) -> Self {
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
                replaced: AtomicBool::new(false),
            }),
        }
    }

    pub(super) fn next_id(&self) -> u32 {
        self.inner.next_id.fetch_add(1, Ordering::SeqCst) + 1
    }

    pub(super) fn is_multiplexed(&self) -> bool {
        matches!(self.inner.mode, Mode::Mux(_))
    }

    pub(super) fn accept(&self, id: u32) -> Result<BrokerListener, BrokerError> {
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
            Mode::Classic(listen) => self.accept_classic(id, listen)?,
        };
        self.inner.registered.notify_waiters();
        Ok(BrokerListener {
            incoming: tls_incoming(raw, self.inner.tls.clone()),
            id,
            guard: ListenerGuard::Session(self.clone()),
        })
    }

    /// Classic: a listener of its own for `id`, announced to the peer.
    fn accept_classic(
        &self,
        id: u32,
        listen: &crate::transport::ListenConfig,
    ) -> Result<mpsc::Receiver<Io>, BrokerError> {
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
        Ok(rx)
    }

    /// Stops accepting on `id` (its listener was dropped). Knocks already acked for it
    /// keep their place: their streams are dropped, not handed to the next id.
    pub(super) fn unaccept(&self, id: u32) {
        lock(&self.inner.state).acceptors.remove(&id);
    }

    pub(crate) fn close(&self) {
        self.inner.closed().cancel();
        let mut state = lock(&self.inner.state);
        state.acceptors.clear();
        state.infos.clear();
        state.acked.clear();
        state.sent.clear();
        state.opener = None;
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

    pub(super) async fn dial_io(&self, id: u32) -> Result<Io, DialIoError> {
        let io = match &self.inner.mode {
            Mode::Classic(_) => self.dial_classic(id).await?,
            Mode::Mux(slot) => self.dial_mux(id, slot).await?,
        };
        Ok(transport::secure_client(self.inner.tls.as_ref(), io).await?)
    }

    async fn dial_classic(&self, id: u32) -> Result<Io, DialIoError> {
        let cached = lock(&self.inner.state).dialed.get(&id).cloned();
        let info = match cached {
            Some(info) => info,
            None => {
                let info = self.wait_info(id).await?;
                let mut state = lock(&self.inner.state);
                if state.dialed.len() >= MAX_STORED_INFOS {
                    state.dialed.clear();
                }
                state.dialed.insert(id, info.clone());
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
        Ok(transport::dial(network, &info.address).await?)
    }

    /// Knocks for `id` and takes the stream opened for its ack. Dropping this future
    /// (or timing out) leaves the knock in place: its ack, if it comes, still opens
    /// (and closes) the stream the peer will route to `id`.
    async fn dial_mux(&self, id: u32, slot: &MuxSlot) -> Result<Io, DialIoError> {
        let _serial = self.inner.dial_lock.lock().await;
        let (tx, rx) = oneshot::channel();
        lock(&self.inner.state)
            .sent
            .push(id, tx)
            .map_err(|knocks::Full| BrokerError::KnockRefused {
                id,
                reason: format!(
                    "{} earlier knocks are still unanswered; the peer is not answering knocks",
                    knocks::MAX_PENDING_KNOCKS
                ),
            })?;
        self.ensure_opener(slot);
        self.send(knock_message(id, false, String::new()))?;
        let answer = tokio::select! {
            res = tokio::time::timeout(BROKER_TIMEOUT, rx) => match res {
                Ok(Ok(answer)) => answer,
                Ok(Err(_)) => return Err(BrokerError::Closed.into()),
                Err(_) => return Err(BrokerError::Timeout { id, waited: BROKER_TIMEOUT }.into()),
            },
            () = self.inner.closed().cancelled_owned() => return Err(BrokerError::Closed.into()),
        };
        match answer {
            Answer::Stream(io) => Ok(io?),
            Answer::Refused(reason) => Err(BrokerError::KnockRefused { id, reason }.into()),
        }
    }

    /// Starts the task that opens one stream per ack, in order, for this broker stream.
    fn ensure_opener(&self, slot: &MuxSlot) {
        let mut state = lock(&self.inner.state);
        if state.opener.as_ref().is_some_and(|o| !o.is_closed()) {
            return;
        }
        let (tx, mut rx) = mpsc::unbounded_channel::<oneshot::Sender<Answer>>();
        state.opener = Some(tx);
        let slot = slot.clone();
        let closed = self.inner.closed();
        tokio::spawn(async move {
            loop {
                let waiter = tokio::select! {
                    w = rx.recv() => match w { Some(w) => w, None => break },
                    () = closed.cancelled() => break,
                };
                let io = match slot.get() {
                    Some(mux) => mux.open().await,
                    None => Err(std::io::Error::new(
                        std::io::ErrorKind::NotConnected,
                        "the host has not connected yet",
                    )),
                };
                // A dial that gave up drops the stream here: it reaches its id and ends.
                let _ = waiter.send(Answer::Stream(io));
            }
        });
    }

    /// Classic: waits for the `ConnInfo` for `id`.
    async fn wait_info(&self, id: u32) -> Result<ConnInfo, BrokerError> {
        let rx = {
            let mut state = lock(&self.inner.state);
            prune_infos(&mut state.infos);
            if let Some(InfoSlot::Arrived(..)) = state.infos.get(&id)
                && let Some(InfoSlot::Arrived(info, _)) = state.infos.remove(&id)
            {
                return Ok(info);
            }
            let (tx, rx) = oneshot::channel();
            state.infos.insert(id, InfoSlot::Waiting(tx));
            rx
        };
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
        match &info.knock {
            Some(k) if info.service_id == 0 && !k.knock && k.error == REPLACED => {
                tracing::debug!("the plugin took a newer host connection; this one is closing");
                self.inner.replaced.store(true, Ordering::SeqCst);
                self.close();
            }
            Some(k) if k.knock && !k.ack => self.answer_knock(info.service_id),
            Some(k) => {
                let answer = (k.knock && k.ack && k.error.is_empty()).then_some(());
                let reason = if k.error.is_empty() {
                    "the peer answered the knock without an ack (handshake failed)".to_owned()
                } else {
                    k.error.clone()
                };
                self.knock_answered(info.service_id, answer.ok_or(reason));
            }
            None => self.info_arrived(info),
        }
    }

    /// Dialing side: an answer to one of our knocks. An ack opens a stream (in order)
    /// even if the dial is gone; an answer nobody asked for opens nothing.
    fn knock_answered(&self, id: u32, answer: Result<(), String>) {
        let mut state = lock(&self.inner.state);
        let Some(waiter) = state.sent.answer(id) else {
            tracing::debug!(id, "ignoring a knock answer nobody waits for");
            return;
        };
        match answer {
            Ok(()) => match &state.opener {
                Some(opener) => {
                    if let Err(mpsc::error::SendError(waiter)) = opener.send(waiter) {
                        let closed = std::io::Error::from(std::io::ErrorKind::NotConnected);
                        let _ = waiter.send(Answer::Stream(Err(closed)));
                    }
                }
                None => {
                    let _ = waiter.send(Answer::Refused("the broker is closing".into()));
                }
            },
            Err(reason) => {
                let _ = waiter.send(Answer::Refused(reason));
            }
        }
    }

    /// Classic: a `ConnInfo` for a dialer (now or within [`BROKER_TIMEOUT`]).
    fn info_arrived(&self, info: ConnInfo) {
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
                prune_infos(&mut state.infos);
                if state.infos.len() >= MAX_STORED_INFOS {
                    tracing::debug!(id, "dropping a broker ConnInfo: too many undialled ones");
                    return;
                }
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
        {
            let mut state = lock(&self.inner.state);
            if state.in_grace >= knocks::MAX_PENDING_KNOCKS {
                drop(state);
                self.send_ack(id, format!("no listener for id {id}"));
                return;
            }
            state.in_grace += 1;
        }
        // `accept_and_serve` may run a moment after the id was sent (go-plugin code often
        // spawns it): give registration a short grace period before refusing.
        let this = self.clone();
        tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + KNOCK_GRACE;
            let answered = loop {
                let registered = this.inner.registered.notified();
                if this.ack_if_accepting(id) {
                    break true;
                }
                tokio::select! {
                    () = registered => {}
                    () = tokio::time::sleep_until(deadline) => break false,
                    () = this.inner.closed().cancelled_owned() => break true,
                }
            };
            let mut state = lock(&this.inner.state);
            state.in_grace = state.in_grace.saturating_sub(1);
            drop(state);
            if !answered {
                this.send_ack(id, format!("no listener for id {id}"));
            }
        });
    }

    /// Acks a knock for `id` if something accepts on it, queueing the next stream for
    /// it. Queue and ack in one step, so acks leave in queue order.
    fn ack_if_accepting(&self, id: u32) -> bool {
        let mut state = lock(&self.inner.state);
        if !state.acceptors.contains_key(&id) {
            return false;
        }
        let error = if state.acked.push(id) {
            String::new()
        } else {
            format!(
                "broker id {id}: {} acked knocks are still waiting for their streams",
                knocks::MAX_PENDING_KNOCKS
            )
        };
        let _ = self.send(knock_message(id, true, error));
        true
    }

    fn send_ack(&self, id: u32, error: String) {
        let _ = self.send(knock_message(id, true, error));
    }

    /// Routes an inbound yamux stream: to the id whose knock was acked first (dropped if
    /// that id stopped accepting), else back to the caller (the plugin's main server;
    /// the host drops it).
    pub(crate) fn route_inbound(&self, io: Io) -> Option<Io> {
        let mut state = lock(&self.inner.state);
        let id = state.acked.next()?;
        let Some(acceptor) = state.acceptors.get(&id) else {
            tracing::debug!(id, "dropping a brokered stream: its id stopped accepting");
            return None;
        };
        if acceptor.tx.try_send(io).is_err() {
            tracing::debug!(id, "dropping a brokered stream nobody accepts");
        }
        None
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

    /// (stored ConnInfos, acked knocks waiting for streams, knocks in their grace period).
    #[cfg(test)]
    pub(super) fn stored(&self) -> (usize, usize, usize) {
        let state = lock(&self.inner.state);
        (state.infos.len(), state.acked.len(), state.in_grace)
    }

    /// The test harness's end of the broker stream (what `run_host` would send).
    #[cfg(test)]
    pub(super) fn take_outgoing(&self) -> Option<mpsc::UnboundedReceiver<ConnInfo>> {
        lock(&self.inner.rx).take()
    }
}

/// Forgets `ConnInfo`s nobody dialled within [`BROKER_TIMEOUT`] and dialers that left.
fn prune_infos(infos: &mut HashMap<u32, InfoSlot>) {
    infos.retain(|_, slot| match slot {
        InfoSlot::Arrived(_, at) => at.elapsed() < BROKER_TIMEOUT,
        InfoSlot::Waiting(tx) => !tx.is_closed(),
    });
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
