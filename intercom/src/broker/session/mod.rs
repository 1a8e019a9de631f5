//! One broker stream with one peer process: classic `ConnInfo` exchange, or the
//! multiplexed knock protocol (routing bookkept in [`knocks`](super::knocks)).
//!
//! The session's state and its entry points are here; the two transports are in
//! `classic.rs` and `mux.rs`, the broker stream (host client, plugin service) in
//! `stream.rs`.

mod classic;
mod mux;
mod stream;

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use self::classic::InfoSlot;
use self::mux::{Acceptor, Answer};
use super::knocks::{Acked, Sent};
use super::listener::{BrokerListener, ListenerGuard, tls_incoming};
use super::{BrokerError, DialIoError, Mode, Side};
use crate::proto::{ConnInfo, conn_info::Knock};
use crate::sync::lock;
use crate::transport::{self, Io};

/// The notice a plugin sends (as broker id 0) on the stream of a host connection a newer
/// one replaces. Go hosts drop it like any message for an id nobody dials.
const REPLACED: &str = "intercom: replaced by a newer host connection";

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
            Mode::Mux(_) => self.accept_mux(id)?,
            Mode::Classic(listen) => self.accept_classic(id, listen)?,
        };
        self.inner.registered.notify_waiters();
        Ok(BrokerListener {
            incoming: tls_incoming(raw, self.inner.tls.clone()),
            id,
            guard: ListenerGuard::Session(self.clone()),
        })
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
