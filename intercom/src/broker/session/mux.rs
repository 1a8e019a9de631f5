//! Multiplexed broker connections: a knock/ack exchange on the broker stream announces
//! each new yamux stream; acked knocks route inbound streams in ack order (bookkept in
//! [`knocks`](crate::broker::knocks)).

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::Session;
use crate::broker::knocks;
use crate::broker::{BROKER_TIMEOUT, BrokerError, DialIoError, Mode, MuxSlot};
use crate::proto::{ConnInfo, conn_info::Knock};
use crate::sync::lock;
use crate::transport::Io;

/// How long a knock for an id nobody accepts yet waits for `accept` before it is refused.
const KNOCK_GRACE: Duration = Duration::from_secs(2);

/// What a multiplexed dial gets back for its knock.
pub(super) enum Answer {
    /// Acked: the stream opened for it (in ack order).
    Stream(std::io::Result<Io>),
    /// Refused, with the peer's reason.
    Refused(String),
}

/// An id accepting streams: where routed streams go, and the receiver `accept` takes.
pub(super) struct Acceptor {
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
    /// Mux: registers `id` as accepting and takes its stream receiver.
    pub(super) fn accept_mux(&self, id: u32) -> Result<mpsc::Receiver<Io>, BrokerError> {
        let mut state = lock(&self.inner.state);
        let acceptor = state.acceptors.entry(id).or_insert_with(Acceptor::new);
        acceptor
            .rx
            .take()
            .ok_or(BrokerError::AlreadyAccepting { id })
    }

    /// Knocks for `id` and takes the stream opened for its ack. Dropping this future
    /// (or timing out) leaves the knock in place: its ack, if it comes, still opens
    /// (and closes) the stream the peer will route to `id`.
    pub(super) async fn dial_mux(&self, id: u32, slot: &MuxSlot) -> Result<Io, DialIoError> {
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

    /// Dialing side: an answer to one of our knocks. An ack opens a stream (in order)
    /// even if the dial is gone; an answer nobody asked for opens nothing.
    pub(super) fn knock_answered(&self, id: u32, answer: Result<(), String>) {
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

    pub(super) fn answer_knock(&self, id: u32) {
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
}
