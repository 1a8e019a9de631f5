//! The broker of a plugin with several replicas (Kubernetes): one session per replica.

use std::collections::HashMap;
use std::sync::atomic::AtomicU32;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

use super::listener::ListenerGuard;
use super::{BrokerError, BrokerListener, DialIoError, Session};
use crate::sync::lock;
use crate::transport::Io;

/// The broker of a plugin with several replicas: one session per replica.
pub(crate) struct Group {
    pub(super) next_id: AtomicU32,
    /// (replica name, its session).
    pub(super) legs: Mutex<Vec<(String, Session)>>,
    /// Ids being accepted, and where their connections go.
    pub(super) accepting: Mutex<HashMap<u32, mpsc::Sender<std::io::Result<Io>>>>,
    pub(super) closed: CancellationToken,
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

    pub(super) fn accept(self: &Arc<Self>, id: u32) -> Result<BrokerListener, BrokerError> {
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
    pub(super) async fn dial_io(&self, id: u32) -> Result<Io, DialIoError> {
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
