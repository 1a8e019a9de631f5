//! Classic broker connections: the accepting side listens on a socket of its own per id
//! and announces its address in a `ConnInfo`; the dialer waits for that message.

use std::collections::HashMap;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};

use super::Session;
use crate::broker::{BROKER_TIMEOUT, BrokerError, DialIoError};
use crate::handshake::Network;
use crate::proto::ConnInfo;
use crate::sync::lock;
use crate::transport::{self, Io, Listener};

/// At most this many `ConnInfo`s nobody has dialled yet are kept (each for
/// [`BROKER_TIMEOUT`]), and this many addresses of dialled ids are remembered.
const MAX_STORED_INFOS: usize = 256;

pub(super) enum InfoSlot {
    Waiting(oneshot::Sender<ConnInfo>),
    Arrived(ConnInfo, Instant),
}

impl Session {
    /// Classic: a listener of its own for `id`, announced to the peer.
    pub(super) fn accept_classic(
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

    pub(super) async fn dial_classic(&self, id: u32) -> Result<Io, DialIoError> {
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

    /// Classic: a `ConnInfo` for a dialer (now or within [`BROKER_TIMEOUT`]).
    pub(super) fn info_arrived(&self, info: ConnInfo) {
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
}

/// Forgets `ConnInfo`s nobody dialled within [`BROKER_TIMEOUT`] and dialers that left.
fn prune_infos(infos: &mut HashMap<u32, InfoSlot>) {
    infos.retain(|_, slot| match slot {
        InfoSlot::Arrived(_, at) => at.elapsed() < BROKER_TIMEOUT,
        InfoSlot::Waiting(tx) => !tx.is_closed(),
    });
}
